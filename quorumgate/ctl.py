"""Operator commands against the coordinator REST API.

    quorumgate status
    quorumgate vms [--state S] [--grid]
    quorumgate events [--active] [--state S]
    quorumgate event ID
    quorumgate hold ID --reason TEXT | release ID [--reason]
    quorumgate retry ID [--reason TEXT]
    quorumgate force ID --reason TEXT [--skip-drain] [--yes]
    quorumgate pause [--reason TEXT] | resume [--reason TEXT]
    quorumgate policy [show | set [--dry-run on|off] [--max-concurrent-uds N] ...]
    quorumgate groups [list | show NAME | put NAME --members a,b,c [--min-available N]
                       [--health-gate G] [--allow-unknown] | delete NAME]
    quorumgate audit [--limit N]
    quorumgate placement --replicas N [--group G] [--exclude a,b] [--holding c,d]
    quorumgate placement-audit

Topology is shown by *maintenance domain*, the unit a rollout takes down: the update
domain of an availability set ("UD 3"), the zone of zonal VMs ("zone 2"), the fault
domain of a regional Flexible scale set ("FD 1") — the policy's `maintenance_domain`,
resolved from the VMs when it is `auto`. `vms` has a DOMAIN column and `vms --grid` puts
the maintenance domains in columns (rows: fault domains, within the zone for a zonal
cluster; a Flexible scale set's rows are its scale sets). `placement` and
`placement-audit` name the units ("losing zone 1 ..."). A cluster that mixes deployments
has no unit until `quorumgate policy set --maintenance-domain ...`: placement then fails
with 409 and the reason.

An event ID may be abbreviated: any unique prefix, in any case (`CEA34FD8`, what the
dashboard and the demo show; lower-case GUIDs as Azure's documentation writes them).

Every command takes `--url` (default $QG_URL, else http://127.0.0.1:8080), `--token`
(default $QG_TOKEN; viewer for reads, operator for actions), `--cacert FILE` (default
$QG_CACERT: the CA that signed the coordinator's certificate) or `--insecure` (no
certificate check), `--timeout` and `--json` (the API's JSON on stdout, for scripts).
Tables otherwise.

Exit codes: 0 done; 1 the request failed (the message on stderr names the problem:
connection refused, TLS, 401 no or unknown token, 403 role too low, 404 no such thing,
409 conflict or an ambiguous ID prefix, 422 invalid request, 503 coordinator
unavailable), or a confirmation was refused; 2 bad arguments.
Each command has its entry point `main_<command>(argv)` (see `quorumgate.cli.COMMANDS`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import ssl
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

DEFAULT_URL = "http://127.0.0.1:8080"
SUMMARIES = {
    "status": "cluster and coordinator status at a glance",
    "vms": "VMs with their maintenance domain (UD, zone or FD), fault/update domain and "
           "state (--grid: the maintenance domains as columns)",
    "events": "scheduled events with our decision and its reason",
    "event": "one event: platform view, decision, timeline, acknowledgement",
    "hold": "hold an event (no drain, no approval) with a reason",
    "release": "release an operator hold",
    "retry": "drain a failed event again",
    "force": "force-approve an event, bypassing the quorum check; it still drains unless "
             "--skip-drain (asks for confirmation; --yes for scripts)",
    "pause": "pause every new drain and approval",
    "resume": "resume drains and approvals",
    "policy": "the decision policy: show, or set some fields (dry-run, max concurrent UDs...)",
    "groups": "replica groups: list, show, put, delete",
    "forget": "forget a VM that is gone for good: its last known state and drain record go, "
              "so no event waits for it (asks for confirmation; --yes for scripts)",
    "unreadable": "records that exist but do not decode, and what each holds up; delete one",
    "audit": "the audit log, newest last",
    "placement": "choose VMs for N replicas spread over maintenance domains (UDs, zones "
                 "or FDs) and fault domains",
    "placement-audit": "groups that one maintenance-domain (UD, zone or FD) or FD loss would "
                       "break, naming the unit, with the fix",
}


class CtlError(Exception):
    """The request failed; the message says why (shown on stderr, exit 1)."""


# ---------------------------------------------------------------- HTTP


def tls_verify(cacert: str | None, insecure: bool) -> ssl.SSLContext | bool:
    """What httpx checks the coordinator's certificate with: the system's CAs, the CA
    file given (`--cacert`), or nothing (`--insecure`)."""
    if insecure:
        return False
    if not cacert:
        return True
    try:
        return ssl.create_default_context(cafile=cacert)
    except (OSError, ssl.SSLError) as exc:
        raise CtlError(f"--cacert {cacert}: {getattr(exc, 'strerror', None) or exc}") from None


class Api:
    def __init__(self, url: str, token: str, timeout: float,
                 verify: ssl.SSLContext | bool = True) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        headers = {"Accept": "application/json", "User-Agent": "quorumgate-ctl"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout,
                                 follow_redirects=False, verify=verify)

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            if (tls := _tls_problem(exc)) is not None:
                raise CtlError(f"TLS with the coordinator at {self.url} failed: {tls} "
                               "(--cacert FILE: the CA that signed its certificate, or "
                               "--insecure to skip the check)") from None
            raise CtlError(f"cannot connect to the coordinator at {self.url}: "
                           f"{_connect_reason(exc)} (is it running? set --url or $QG_URL)"
                           ) from None
        except httpx.TimeoutException:
            raise CtlError(f"the coordinator at {self.url} did not answer within "
                           f"{self.timeout:g} s (--timeout)") from None
        except httpx.HTTPError as exc:
            raise CtlError(f"request to {self.url}{path} failed: {exc}") from None
        if response.status_code >= 400:
            raise CtlError(self._http_error(response))
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise CtlError(f"{self.url}{path} answered {response.status_code} with a body "
                           "that is not JSON: is --url a quorumgate coordinator?") from None

    def _http_error(self, response: httpx.Response) -> str:
        code = response.status_code
        detail = _detail(response)
        if code == 401:
            hint = ("no token given: pass --token or set $QG_TOKEN" if not self.token
                    else "check --token / $QG_TOKEN")
            return f"401 unauthorized: {detail}; {hint}"
        if code == 403:
            return f"403 forbidden: {detail}"
        if code == 404:
            if detail == "Not Found":  # no such route: not our API (or not this version)
                return (f"404 not found: {response.request.url.path} — is --url "
                        f"({self.url}) a quorumgate coordinator?")
            return f"404 not found: {detail}"
        if code == 409:
            return f"409 conflict: {detail}"
        if code == 422:
            return f"422 invalid request: {detail}"
        if code == 503:
            hint = "" if "retry" in detail else "; retry shortly or use another replica"
            return f"503 coordinator unavailable: {detail}{hint}"
        return f"{code} {response.reason_phrase}: {detail}"


def _tls_problem(exc: httpx.ConnectError) -> str | None:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause.verify_message or str(cause)
        if isinstance(cause, ssl.SSLError):
            return cause.reason or str(cause)
        cause = cause.__cause__ or cause.__context__
    text = str(exc)
    return text if "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in text else None


def _connect_reason(exc: httpx.ConnectError) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        cause = cause.__cause__ or cause.__context__
    text = str(exc)
    return "connection refused" if "refused" in text.lower() else (text or "cannot connect")


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    detail = body.get("detail") if isinstance(body, dict) else body
    if isinstance(detail, list):  # FastAPI's default validation errors
        return "; ".join(".".join(map(str, e.get("loc", ()))) + ": " + str(e.get("msg", ""))
                         for e in detail if isinstance(e, dict)) or json.dumps(detail)
    return str(detail)


# ---------------------------------------------------------------- output


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces; the last column is never padded."""
    text_rows = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(value))
    lines = []
    for row in [list(headers), *text_rows]:
        cells = [value.ljust(widths[i]) if i < len(row) - 1 else value
                 for i, value in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _cell(value: Any) -> str:
    """One table cell on one line (a hook's output in a reason keeps its words, not its
    line breaks: ` | ` between its lines)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or "-"
    text = str(value)
    if "\n" in text:
        text = " | ".join(line.strip() for line in text.splitlines() if line.strip())
    return text


def pairs(items: Sequence[tuple[str, Any]]) -> str:
    """`key:  value` lines; a value of several lines continues under its first line."""
    width = max(len(k) for k, _ in items)
    out = []
    for k, v in items:
        lines = (str(v).splitlines() or [""]) if isinstance(v, str) else [_cell(v)]
        out.append(f"{k + ':':<{width + 1}}  {lines[0] if lines[0] else '-'}")
        out += [" " * (width + 3) + line for line in lines[1:]]
    return "\n".join(out)


def when(at: float | None) -> str:
    if at is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at)) + "Z"


def relative(at: float | None, now: float) -> str:
    if at is None:
        return "-"
    seconds = int(round(at - now))
    span = abs(seconds)
    if span < 60:
        text = f"{span}s"
    elif span < 3600:
        text = f"{span // 60}m{span % 60:02d}s"
    elif span < 86400:
        text = f"{span // 3600}h{span % 3600 // 60:02d}m"
    else:
        text = f"{span // 86400}d{span % 86400 // 3600:02d}h"
    return "now" if span == 0 else (f"in {text}" if seconds > 0 else f"{text} ago")


def clip(text: str, width: int = 90) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


# ---------------------------------------------------------------- commands


def common_options(p: argparse.ArgumentParser, subcommand: bool = False) -> None:
    """--url, --token, --timeout, --json. A subcommand's parser takes them too (so that
    `groups put NAME ... --url U` works) but sets them only when given: argparse lets a
    subparser's defaults overwrite what the main parser read."""
    def default(value: Any) -> Any:
        return argparse.SUPPRESS if subcommand else value

    p.add_argument("--url", default=default(os.environ.get("QG_URL") or DEFAULT_URL),
                   help=f"coordinator API (default $QG_URL, else {DEFAULT_URL})")
    p.add_argument("--token", default=default(os.environ.get("QG_TOKEN", "")),
                   help="bearer token (default $QG_TOKEN)")
    p.add_argument("--cacert", default=default(os.environ.get("QG_CACERT") or None),
                   metavar="FILE", help="CA certificate(s) to check an https:// coordinator "
                                        "with (default $QG_CACERT, else the system's)")
    p.add_argument("--insecure", action="store_true", default=default(False),
                   help="do not check the coordinator's TLS certificate")
    p.add_argument("--timeout", type=float, default=default(10.0),
                   help="seconds (default 10)")
    p.add_argument("--json", action="store_true", default=default(False),
                   help="print the API's JSON")


def _parser(name: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"quorumgate {name}", description=SUMMARIES[name])
    common_options(p)
    return p


def _names(values: Sequence[str] | None) -> list[str]:
    """`a,b --x c` style lists: comma separated, repeatable."""
    return [n.strip() for v in values or [] for n in v.split(",") if n.strip()]


NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def name_arg(what: str) -> Callable[[str], str]:
    """An argparse type: a VM, group or event name (one ZooKeeper path component), so a
    typo is a clear usage error, not a confusing answer from the server."""
    def check(value: str) -> str:
        if not NAME.match(value):
            raise argparse.ArgumentTypeError(
                f"invalid {what} {value!r}: letters, digits, '_', '.' and '-' only, starting "
                "with a letter or digit, at most 128 characters")
        return value
    check.__name__ = what
    return check


def command_line() -> str:
    """How to run this `quorumgate` from the current directory: the bare name when the
    shell finds this very installation on PATH, else the path of its script (e.g.
    `.venv/bin/quorumgate`), else `python -m quorumgate.cli`."""
    script = Path(sys.executable).parent / "quorumgate"
    found = shutil.which("quorumgate")
    if found and script.exists() and Path(found).resolve() == script.resolve():
        return "quorumgate"
    if not script.exists():
        return f"{sys.executable} -m quorumgate.cli"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def emit(text: str) -> None:
    """Print to stdout; a reader that went away (`quorumgate events | head`) is not an
    error: stop writing quietly (no BrokenPipeError traceback)."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # Python would complain again flushing stdout at exit: point it at /dev/null
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _run(name: str, argv: Sequence[str] | None,
         configure: Callable[[argparse.ArgumentParser], None],
         act: Callable[[Api, argparse.Namespace], Any],
         show: Callable[[Any, argparse.Namespace, Api], str]) -> int:
    parser = _parser(name)
    configure(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    api: Api | None = None
    try:
        api = Api(args.url, args.token, args.timeout, tls_verify(args.cacert, args.insecure))
        result = act(api, args)
        text = json.dumps(result, indent=2) if args.json else show(result, args, api)
    except CtlError as exc:
        print(f"quorumgate {name}: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if api is not None:
            api.close()
    if text:
        emit(text)
    return 0


def _none(parser: argparse.ArgumentParser) -> None:
    return None


# status ------------------------------------------------------------


def _show_status(s: dict[str, Any], args: argparse.Namespace, api: Api) -> str:
    counts = ", ".join(f"{k} {v}" for k, v in s["counts"].items() if v) or "none"
    leader = s["leader"] or "unknown"
    last = s["last_pass"]
    items: list[tuple[str, Any]] = [
        ("cluster", s["cluster"]),
        ("replica", f"{s['identity']} ({'leader' if s['is_leader'] else 'follower'})"),
        ("leader", leader),
        ("zookeeper", "connected" if s["connected"] else "DISCONNECTED (last known state)"),
        ("ready", s["ready"]),
        ("approvals", "PAUSED" if s["paused"] else "running"),
        ("dry run", s["dry_run"]),
        ("vms", f"{s['live_vms']} live of {s['vms']}"),
        ("groups", f"{s['groups']} ({s['groups_below_min']} below min_available)"),
        ("events", f"{s['active_events']} active of {s['events']}"),
        ("decisions", counts),
        ("policy version", s["policy_version"]),
        ("last pass", f"{relative(last['at'], s['now'])} {last['summary']}".strip()
         if last["at"] is not None else "-"),
        ("server time", when(s["now"])),
        ("version", f"quorumgate {s['version']}" if s.get("version") else "-"),
    ]
    if s.get("maintenance_domain"):
        items.insert(7, ("maintenance", UNITS.get(s["maintenance_domain"],
                                                         s["maintenance_domain"])))
    elif s.get("maintenance_domain_problem"):
        items.insert(2, ("PROBLEM", f"no maintenance domain: {s['maintenance_domain_problem']}"))
    if s.get("problem"):
        items.insert(2, ("PROBLEM", s["problem"]))
    return pairs(items)


def main_status(argv: Sequence[str] | None = None) -> int:
    return _run("status", argv, _none, lambda api, a: api.call("GET", "/v1/status"),
                _show_status)


# vms ---------------------------------------------------------------

VM_STATES = ("up", "draining", "drain_failed", "drained", "rebooting", "restoring", "lost")


UNITS = {"update_domain": "by update domain (an availability set)",
         "zone": "by zone (zonal VMs)",
         "fault_domain": "by fault domain (a Flexible scale set)"}
"""How the cluster's maintenance domain reads in `quorumgate status`."""


def _vms_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state", choices=VM_STATES, help="only VMs in this state")
    p.add_argument("--grid", action="store_true",
                   help="the grid (GET /v1/topology): the maintenance domains as columns "
                        "(UDs, zones, or a Flexible scale set's FDs), fault domains as rows "
                        "(within each zone for a zonal cluster; a Flexible scale set's rows "
                        "are its scale sets)")


def _vms(api: Api, args: argparse.Namespace) -> Any:
    if args.grid:
        return api.call("GET", "/v1/topology")
    rows = api.call("GET", "/v1/vms")
    rows = [r for r in rows if args.state is None or r["state"] == args.state]
    if args.json:
        return rows
    return {"rows": rows, "status": api.call("GET", "/v1/status")}


def _show_vms(result: Any, args: argparse.Namespace, api: Api) -> str:
    if args.grid:
        return grid_text(result)
    rows, status = result["rows"], result["status"]
    problem = status.get("maintenance_domain_problem")
    note = f"\nno maintenance domain: {problem}" if problem else ""
    if not rows:
        return "no VMs" + (f" in state {args.state}" if args.state else "") + note
    return table(["NAME", "DOMAIN", "FD", "UD", "ZONE", "STATE", "LIVE", "RESERVED BY",
                  "GROUPS", "ADDRESS"],
                 [[r["name"], r.get("maintenance_domain"), r["fd"], r["ud"],
                   r.get("zone") or None, r["state"], r["live"], r["reserved_by"],
                   r["groups"], r["address"] or None] for r in rows]) + note


def _cell_vms(vms: list[dict[str, Any]]) -> str:
    return " ".join(f"{v['name']}({v['state']})" if v["state"] != "up" else v["name"]
                    for v in vms) or "."


def grid_text(topology: dict[str, Any]) -> str:
    """The maintenance domains as columns; an older coordinator's FD x UD grid otherwise."""
    if "columns" not in topology:
        cells = {(c["fd"], c["ud"]): c["vms"] for c in topology["cells"]}
        rows = [[f"FD {fd}"] + [_cell_vms(cells.get((fd, ud), [])) for ud in topology["uds"]]
                for fd in topology["fds"]]
        text = table([""] + [f"UD {ud}" for ud in topology["uds"]], rows)
        if topology.get("unplaced"):
            text += "\nwithout FD/UD: " + " ".join(v["name"] for v in topology["unplaced"])
        return text
    grid = {(c["row"], c["column"]): c["vms"] for c in topology["grid"]}
    columns = topology["columns"]
    text = table([""] + columns,
                 [[row] + [_cell_vms(grid.get((row, column), [])) for column in columns]
                  for row in topology["rows"]])
    mode = topology.get("maintenance_domain")
    if mode == "zone":
        text += "\ncolumns: zones (the maintenance domain); rows: fault domains within each zone"
    elif mode == "fault_domain":
        text += "\ncolumns: fault domains (the maintenance domain); rows: scale sets"
    elif mode == "update_domain":
        text += "\ncolumns: update domains (the maintenance domain); rows: fault domains"
    else:
        text += ("\nno maintenance domain: "
                 f"{topology.get('maintenance_domain_problem') or 'unknown'}"
                 "\ncolumns: each VM's own unit; rows: fault domains")
    if topology.get("grid_unplaced"):
        unit = {"zone": "zone", "fault_domain": "fault domain"}.get(mode or "", "update domain")
        text += (f"\nwithout a known {unit}: "
                 + " ".join(v["name"] for v in topology["grid_unplaced"]))
    return text


def main_vms(argv: Sequence[str] | None = None) -> int:
    return _run("vms", argv, _vms_args, _vms, _show_vms)


# events ------------------------------------------------------------

DECISION_STATES = ("new", "draining", "ready", "approved", "acknowledged", "started",
                   "completed", "restored", "held", "forced", "cancelled", "failed")


def _events_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--active", action="store_true", help="only events not over yet")
    p.add_argument("--state", choices=DECISION_STATES, help="only events in this state")


def _events(api: Api, args: argparse.Namespace) -> Any:
    params: dict[str, str] = {}
    if args.active:
        params["active"] = "true"
    if args.state:
        params["state"] = args.state
    return api.call("GET", "/v1/events", params=params)


def _server_now(api: Api) -> float:
    try:
        return float(api.call("GET", "/v1/status")["now"])
    except (CtlError, KeyError, TypeError, ValueError):
        return time.time()


def flags(e: dict[str, Any]) -> list[str]:
    """What an operator must not miss about an event, besides its state."""
    out = []
    if e.get("forced") and e.get("state") != "forced":
        out.append("forced")
    if e.get("dry_run"):
        out.append("dry-run")
    if e.get("at_risk"):
        out.append("at risk")
    if e.get("retry_pending"):
        out.append("retry requested")
    return out


def _reason(e: dict[str, Any]) -> str:
    """The decision's reason, with the operator's hold or force when the reason does not
    already say it (a held event's reason is the hold: say it once)."""
    reason = e.get("reason") or ""
    parts = [f"[{', '.join(f)}]" if (f := flags(e)) else "", reason]
    hold = e.get("operator_hold")
    if hold and hold not in reason:
        parts.append(f"[operator hold: {hold}]")
    force = e.get("force_reason")
    if force and force not in reason:
        parts.append(f"[operator force: {force}]")
    return " ".join(p for p in parts if p)


def _show_events(rows: list[dict[str, Any]], args: argparse.Namespace, api: Api) -> str:
    if not rows:
        return "no events" + (" active" if args.active else "")
    now = _server_now(api)
    return table(["EVENT", "TYPE", "PLATFORM", "STATE", "CODE", "NOT BEFORE", "VMS",
                  "REASON"],
                 [[e["event_id"], e["event_type"], e["status"], e["state"], e.get("code"),
                   relative(e["not_before"], now), e["resources"], clip(_reason(e))]
                  for e in rows])


def main_events(argv: Sequence[str] | None = None) -> int:
    return _run("events", argv, _events_args, _events, _show_events)


def _event_id(p: argparse.ArgumentParser) -> None:
    p.add_argument("event_id", metavar="ID", type=name_arg("event id"),
                   help="the event id, or a unique prefix of it in any case")


def _path_event(event_id: str, action: str = "") -> str:
    return f"/v1/events/{quote(event_id, safe='')}" + (f"/{action}" if action else "")


def _show_event(e: dict[str, Any], args: argparse.Namespace, api: Api) -> str:
    now = _server_now(api)
    decision = e.get("decision") or {}
    event = e.get("event") or {}
    ack = e.get("ack")
    items: list[tuple[str, Any]] = [
        ("event", e["event_id"]),
        ("type", e["event_type"]),
        ("platform status", e["status"]),
        ("state", e["state"] + (f" [{', '.join(f)}]" if (f := flags(e)) else "")),
        ("code", e.get("code") or "-"),
        ("reason", e["reason"] or "-"),
        ("resources", e["resources"]),
        ("not before", f"{when(e['not_before'])} ({relative(e['not_before'], now)})"
         if e["not_before"] else "-"),
        ("description", event.get("description") or "-"),
        ("seen by", event.get("seen_by") or []),
        ("reserved", decision.get("reserved") or []),
        ("acker", f"{decision['acker']} (approval {decision.get('approval', 0)})"
         if decision.get("acker") else "-"),
        ("acknowledgement", f"{ack['state']} by {ack['vm']} at {when(ack['at'])}"
         f"{': ' + ack['detail'] if ack.get('detail') else ''}" if ack else "-"),
        ("operator hold", (e["operator_hold"] + (f" (by {e['hold_by']}"
                           + (f", {relative(e['hold_at'], now)}" if e.get("hold_at") else "")
                           + ")" if e.get("hold_by") else "")) if e["operator_hold"] else "-"),
        ("operator force", (e["force_reason"] + (" (skip drain)" if e.get("force_skip_drain")
                                                 else " (drains first)"))
         if e["force_reason"] else "-"),
        ("drain retries", f"{e.get('retries', 0)}"
                          + (" (an operator retry is pending)" if e.get("retry_pending")
                             else "")),
    ]
    text = pairs(items)
    history = decision.get("history") or []
    if history:
        text += "\n\ntimeline:\n" + table(
            ["AT", "WHEN", "STATE", "BY", "REASON"],
            [[when(t["at"]), relative(t["at"], now), t["to"], t.get("by", ""), t["reason"]]
             for t in history])
    return text


def main_event(argv: Sequence[str] | None = None) -> int:
    return _run("event", argv, _event_id,
                lambda api, a: api.call("GET", _path_event(a.event_id)), _show_event)


# hold, release, force ----------------------------------------------


def _reason_arg(required: bool) -> Callable[[argparse.ArgumentParser], None]:
    def configure(p: argparse.ArgumentParser) -> None:
        _event_id(p)
        p.add_argument("--reason", required=required, default="",
                       help="why (mandatory; shown in the decision and the audit log)"
                       if required else "why (recorded in the audit log)")
    return configure


def _override(action: str) -> Callable[[Api, argparse.Namespace], Any]:
    def act(api: Api, args: argparse.Namespace) -> Any:
        body = {"reason": args.reason} if args.reason else None
        if action in ("hold", "force") and not args.reason.strip():
            raise CtlError("--reason must not be empty")
        return api.call("POST", _path_event(args.event_id, action), json=body)
    return act


def _show_override(word: str) -> Callable[[Any, argparse.Namespace, Api], str]:
    def show(o: dict[str, Any], args: argparse.Namespace, api: Api) -> str:
        lines = [f"event {o['event_id']}: {word} recorded by {o['by']}"]
        if word == "hold" and o.get("hold"):
            lines.append(f"  hold: {o['hold']}")
        if word == "force" and o.get("force"):
            lines.append(f"  force: {o['force']}"
                         + ("  (WITHOUT draining)" if o.get("skip_drain")
                            else "  (drains first, then approves)"))
        if word == "retry":
            lines.append(f"  retry request {o['retry']}: the leader asks the event's VMs to "
                         "drain again")
        lines.append("  the leader applies it at its next decision pass "
                     f"(quorumgate event {o['event_id']})")
        return "\n".join(lines)
    return show


def main_hold(argv: Sequence[str] | None = None) -> int:
    return _run("hold", argv, _reason_arg(True), _override("hold"), _show_override("hold"))


def main_release(argv: Sequence[str] | None = None) -> int:
    return _run("release", argv, _reason_arg(False), _override("release"),
                _show_override("release"))


def main_retry(argv: Sequence[str] | None = None) -> int:
    return _run("retry", argv, _reason_arg(False), _override("retry"),
                _show_override("retry"))


def _force_args(p: argparse.ArgumentParser) -> None:
    _reason_arg(True)(p)
    p.add_argument("--skip-drain", action="store_true",
                   help="approve WITHOUT running the drain hooks (no switchover, no "
                        "decommission): the replicas go down with their VMs")
    p.add_argument("--yes", "-y", action="store_true",
                   help="do not ask for confirmation (scripts)")


def confirm(question: str, details: Sequence[str]) -> bool:
    """Ask on the terminal (stderr, so --json output stays clean); anything but y/yes,
    or no answer at all (stdin closed), is a no."""
    for line in details:
        print(line, file=sys.stderr)
    print(f"{question} [y/N]: ", end="", file=sys.stderr, flush=True)
    try:
        answer = sys.stdin.readline() if sys.stdin is not None else ""
    except (OSError, ValueError):  # no usable stdin (closed, detached)
        answer = ""
    if not answer:
        print(file=sys.stderr)
    return answer.strip().lower() in ("y", "yes")


def _force(api: Api, args: argparse.Namespace) -> Any:
    if not args.reason.strip():
        raise CtlError("--reason must not be empty")
    event = api.call("GET", _path_event(args.event_id))  # resolves a prefix, or fails
    eid = event["event_id"]
    if not args.yes:
        vms = ", ".join(event.get("resources") or []) or "no VMs"
        details = [f"event {eid}: {event.get('event_type') or '?'} on {vms}",
                   f"  now {event['state']}: {event.get('reason') or '-'}"]
        if args.skip_drain:
            details.append("force --skip-drain approves it WITHOUT draining: the drain "
                           "hooks do not run (no switchover, no decommission) and the "
                           "replicas on these VMs go down with them, whatever the quorum.")
        else:
            details.append("force bypasses the quorum check: the VMs are drained, then the "
                           "event is approved even if a replica group drops below its "
                           "minimum.")
        if not confirm("Force it?", details):
            raise CtlError("not forced: no confirmation (answer y, or pass --yes)")
    return api.call("POST", _path_event(eid, "force"),
                    json={"reason": args.reason, "skip_drain": args.skip_drain})


def main_force(argv: Sequence[str] | None = None) -> int:
    return _run("force", argv, _force_args, _force, _show_override("force"))


# pause, resume -----------------------------------------------------


def _optional_reason(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reason", default="", help="why (recorded in the audit log)")


def _policy_switch(path: str) -> Callable[[Api, argparse.Namespace], Any]:
    def act(api: Api, args: argparse.Namespace) -> Any:
        return api.call("POST", path, json={"reason": args.reason} if args.reason else None)
    return act


def _show_policy(p: dict[str, Any], args: argparse.Namespace, api: Api) -> str:
    if p["paused"]:
        return (f"approvals paused (policy version {p['version']}): events in flight go on, "
                "new ones are held until `quorumgate resume`")
    return f"approvals running (policy version {p['version']})"


def main_pause(argv: Sequence[str] | None = None) -> int:
    return _run("pause", argv, _optional_reason, _policy_switch("/v1/pause"), _show_policy)


def main_resume(argv: Sequence[str] | None = None) -> int:
    return _run("resume", argv, _optional_reason, _policy_switch("/v1/resume"), _show_policy)


# policy ------------------------------------------------------------

POLICY_FIELDS: list[tuple[str, str, Callable[[str], Any], str]] = []
"""(flag, field, parser, help) of `policy set`."""


def _on_off(value: str) -> bool:
    text = value.strip().lower()
    if text in ("on", "true", "yes", "1"):
        return True
    if text in ("off", "false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected on or off, not {value!r}")


def _cap(value: str) -> int | str | None:
    text = value.strip()
    if text.lower() in ("none", "off", ""):
        return None
    if text.endswith("%"):
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a count, a percent like 10%, or none, not {value!r}") from None


def _rule(value: str) -> tuple[str, str]:
    kind, sep, rule = value.partition("=")
    if not sep or rule not in ("drain", "no_drain"):
        raise argparse.ArgumentTypeError(
            f"expected TYPE=drain or TYPE=no_drain (e.g. Freeze=no_drain), not {value!r}")
    return kind, rule


DOMAIN_MODES = ("auto", "update_domain", "zone", "fault_domain")


def _domain_mode(value: str) -> str:
    if value not in DOMAIN_MODES:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(DOMAIN_MODES)}, "
                                         f"not {value!r}")
    return value


POLICY_FIELDS += [
    ("--dry-run", "dry_run", _on_off, "on: decide and audit, but drain and acknowledge "
                                      "nothing; off: act"),
    ("--max-concurrent-uds", "max_concurrent_uds", int,
     "maintenance domains (UDs, zones or FDs) in maintenance at once"),
    ("--maintenance-domain", "maintenance_domain", _domain_mode,
     "the unit the platform takes down together: auto (from the VMs), update_domain "
     "(availability sets), zone (zonal VMs) or fault_domain (Flexible scale sets); name "
     "one for a cluster that mixes them"),
    ("--max-unavailable", "max_unavailable", _cap,
     "cluster-wide cap on unavailable VMs: a count, a percent (10%%), or none"),
    ("--drain-timeout", "drain_timeout_s", float, "seconds a drain may take"),
    ("--drain-retries", "drain_retries", int,
     "automatic retries of a failed drain before the event stays failed"),
    ("--drain-retry-backoff", "drain_retry_backoff_s", float,
     "seconds before the first automatic retry (doubled for each further one)"),
    ("--best-effort-lead", "best_effort_lead_s", float,
     "seconds before NotBefore a held event's VMs are drained anyway"),
    ("--ack-timeout", "ack_timeout_s", float, "seconds before an approval is renewed"),
    ("--restore-timeout", "restore_timeout_s", float, "seconds a restore may take"),
    ("--gone-grace", "gone_grace_s", float,
     "seconds an event must stay missing from IMDS to be over"),
    ("--clock-skew", "clock_skew_s", float, "tolerated clock disagreement, seconds"),
    ("--unmanaged-vms", "unmanaged_vms", str, "hold or outside: events naming VMs "
                                              "quorumgate does not know"),
]


def _policy_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="{show,set}")
    common_options(sub.add_parser("show", help="the policy (the default)"), subcommand=True)
    put = sub.add_parser("set", help="change the fields given, keep every other one "
                                     "(pause state included) (operator)")
    for flag, field, parse, text in POLICY_FIELDS:
        put.add_argument(flag, dest=field, type=parse, help=text, default=argparse.SUPPRESS)
    put.add_argument("--rule", dest="rules", type=_rule, action="append", metavar="TYPE=RULE",
                     help="per event type: drain (the default) or no_drain (repeatable)")
    common_options(put, subcommand=True)


def _policy(api: Api, args: argparse.Namespace) -> Any:
    if (args.action or "show") == "show":
        return api.call("GET", "/v1/policy")
    changes = {field: getattr(args, field) for _, field, _, _ in POLICY_FIELDS
               if hasattr(args, field)}  # given, even as `--max-unavailable none`
    before = api.call("GET", "/v1/policy")
    if args.rules:
        changes["rules"] = {**before.get("rules", {}), **dict(args.rules)}
    if not changes:
        raise CtlError("nothing to set: give at least one of --dry-run, "
                       "--max-concurrent-uds, ... (quorumgate policy set --help)")
    after = api.call("PATCH", "/v1/policy", json=changes)
    if args.json:
        return after
    return {"before": before, "after": after, "changed": sorted(changes)}


def _show_policy_cmd(result: dict[str, Any], args: argparse.Namespace, api: Api) -> str:
    if (args.action or "show") == "show":
        p = result
        rules = ", ".join(f"{k} {v}" for k, v in sorted(p.get("rules", {}).items()))
        return pairs([
            ("version", p["version"]),
            ("approvals", "PAUSED (quorumgate resume)" if p["paused"] else "running"),
            ("dry run", "ON: nothing is drained or acknowledged" if p["dry_run"] else "off"),
            ("max concurrent UDs", p["max_concurrent_uds"]),
            ("maintenance domain", p.get("maintenance_domain", "update_domain")),
            ("max unavailable", p["max_unavailable"] if p["max_unavailable"] is not None
             else "no cap"),
            ("rules", rules),
            ("drain timeout", f"{p['drain_timeout_s']:g} s"),
            ("drain retries", f"{p['drain_retries']} (first after "
                              f"{p['drain_retry_backoff_s']:g} s, then doubling)"),
            ("best-effort lead", f"{p['best_effort_lead_s']:g} s before NotBefore"),
            ("ack timeout", f"{p['ack_timeout_s']:g} s"),
            ("restore timeout", f"{p['restore_timeout_s']:g} s"),
            ("gone grace", f"{p['gone_grace_s']:g} s"),
            ("clock skew", f"{p['clock_skew_s']:g} s"),
            ("unmanaged VMs", p["unmanaged_vms"]),
        ])
    before, after = result["before"], result["after"]
    lines = [f"policy version {after['version']}:"]
    for field in result["changed"]:
        old, new = before.get(field), after.get(field)
        lines.append(f"  {field}: {json.dumps(old)} -> {json.dumps(new)}"
                     + ("" if old != new else " (unchanged)"))
    if after["paused"]:
        lines.append("  approvals are still PAUSED (quorumgate resume)")
    return "\n".join(lines)


def main_policy(argv: Sequence[str] | None = None) -> int:
    return _run("policy", argv, _policy_args, _policy, _show_policy_cmd)


# groups ------------------------------------------------------------


def _groups_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="{list,show,put,delete}")
    common_options(sub.add_parser("list", help="every group with its availability "
                                               "(the default)"), subcommand=True)
    show = sub.add_parser("show", help="one group")
    show.add_argument("name", type=name_arg("group name"))
    put = sub.add_parser("put", help="create or replace a group (operator)")
    put.add_argument("name", type=name_arg("group name"))
    put.add_argument("--members", action="append", required=True,
                     help="comma-separated VM names (repeatable)")
    put.add_argument("--min-available", default="majority",
                     help='a count, or "majority" (the default)')
    put.add_argument("--health-gate", default="",
                     help="URL that must answer 2xx, or command that must exit 0")
    put.add_argument("--allow-unknown", action="store_true",
                     help="save even with members no agent has registered yet")
    delete = sub.add_parser("delete", help="delete a group (operator)")
    delete.add_argument("name", type=name_arg("group name"))
    for parser in (show, put, delete):
        common_options(parser, subcommand=True)


def _min_available(value: str) -> int | str:
    value = value.strip()
    if value == "majority":
        return value
    try:
        return int(value)
    except ValueError:
        raise CtlError(f'--min-available must be a count or "majority", not {value!r}') from None


def _groups(api: Api, args: argparse.Namespace) -> Any:
    action = args.action or "list"
    if action == "list":
        return api.call("GET", "/v1/groups")
    path = f"/v1/groups/{quote(args.name, safe='')}"
    if action == "show":
        return api.call("GET", path)
    if action == "put":
        body = {"members": _names(args.members),
                "min_available": _min_available(args.min_available)}
        if args.health_gate:
            body["health_gate"] = args.health_gate
        if args.allow_unknown:
            body["allow_unknown"] = True
        saved = api.call("PUT", path, json=body)
        for warning in saved.get("warnings", []):
            print(f"quorumgate groups: warning: group {args.name}: {warning}",
                  file=sys.stderr)
        return saved
    api.call("DELETE", path)
    return {"deleted": args.name}


def _show_groups(result: Any, args: argparse.Namespace, api: Api) -> str:
    action = args.action or "list"
    if action == "list":
        if not result:
            return "no groups"
        return table(["GROUP", "MEMBERS", "LIVE", "AVAILABLE", "MIN", "OK", "UNAVAILABLE",
                      "SOURCE"],
                     [[g["name"], g["members"], g["live"], g["available"], g["required"],
                       g["ok"], g["unavailable"], g["source"]] for g in result])
    if action == "show":
        return pairs([("group", result["name"]), ("members", result["members"]),
                      ("min_available", f"{result['min_available']} "
                                        f"(needs {result['required']})"),
                      ("live", result["live"]), ("available", result["available"]),
                      ("ok", result["ok"]), ("unavailable", result["unavailable"]),
                      ("health gate", result["health_gate"] or "-"),
                      ("source", result["source"])])
    if action == "put":
        return (f"group {result['name']}: {','.join(result['members'])} "
                f"(min_available {result['min_available']}) saved")
    return f"group {result['deleted']} deleted"


def main_groups(argv: Sequence[str] | None = None) -> int:
    return _run("groups", argv, _groups_args, _groups, _show_groups)


# repairs -----------------------------------------------------------


def _forget_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("vm", type=name_arg("VM name"))
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def _forget(api: Api, args: argparse.Namespace) -> Any:
    if not args.yes and not confirm(
            f"Forget VM {args.vm}?",
            ["its last known state and drain record are removed: no event waits for it",
             "groups that list it keep counting it unavailable until they change"]):
        raise CtlError("not confirmed (--yes to skip the question)")
    return api.call("DELETE", f"/v1/vms/{quote(args.vm, safe='')}")


def main_forget(argv: Sequence[str] | None = None) -> int:
    return _run("forget", argv, _forget_args, _forget,
                lambda r, a, api: f"forgot {r['vm']}: removed {', '.join(r['removed'])}")


def _unreadable_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="{list,delete}")
    common_options(sub.add_parser("list", help="records that do not decode (the default)"),
                   subcommand=True)
    delete = sub.add_parser("delete", help="remove one (operator, audited)")
    delete.add_argument("folder", choices=["decisions", "groups", "drain", "acks",
                                           "overrides", "events", "vm-state", "vms"])
    delete.add_argument("name", type=name_arg("record name"))
    common_options(delete, subcommand=True)


def _unreadable(api: Api, args: argparse.Namespace) -> Any:
    if (args.action or "list") == "list":
        return api.call("GET", "/v1/unreadable")
    return api.call("DELETE", f"/v1/unreadable/{args.folder}/{quote(args.name, safe='')}")


def _show_unreadable(result: Any, args: argparse.Namespace, api: Api) -> str:
    if (args.action or "list") == "delete":
        return f"removed {result['folder']}/{result['name']}"
    if not result:
        return "every record decodes"
    return table(["FOLDER", "NAME", "VERSION", "HOLDS UP"],
                 [[r["folder"], r["name"], r["version"], r["blocks"]] for r in result])


def main_unreadable(argv: Sequence[str] | None = None) -> int:
    return _run("unreadable", argv, _unreadable_args, _unreadable, _show_unreadable)


# audit -------------------------------------------------------------


def _audit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit", type=int, default=50, help="newest N entries (default 50)")


def _show_audit(rows: list[dict[str, Any]], args: argparse.Namespace, api: Api) -> str:
    if not rows:
        return "the audit log is empty"
    return table(["AT", "ACTOR", "ACTION", "EVENT", "DETAIL"],
                 [[when(r["at"]), r["actor"], r["action"], r.get("event_id") or None,
                   clip(r.get("detail") or "", 100)] for r in rows])


def main_audit(argv: Sequence[str] | None = None) -> int:
    return _run("audit", argv, _audit_args,
                lambda api, a: api.call("GET", "/v1/audit", params={"limit": a.limit}),
                _show_audit)


# placement ---------------------------------------------------------


def _placement_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--replicas", type=int, required=True, help="how many replicas")
    p.add_argument("--group", help="the group being placed (its own load is not counted)")
    p.add_argument("--exclude", action="append", help="VMs never to choose (a,b; repeatable)")
    p.add_argument("--holding", action="append",
                   help="VMs that already hold a replica: kept (a,b; repeatable)")


def _placement(api: Api, args: argparse.Namespace) -> Any:
    body: dict[str, Any] = {"replicas": args.replicas, "exclude": _names(args.exclude),
                            "holding": _names(args.holding)}
    if args.group:
        body["group"] = args.group
    placement = api.call("POST", "/v1/placement", json=body)
    if not args.json and "domains" not in placement:  # an older coordinator
        placement["_vms"] = {v["name"]: v for v in api.call("GET", "/v1/vms")}
    return placement


def _show_placement(p: dict[str, Any], args: argparse.Namespace, api: Api) -> str:
    chosen = set(p["chosen"])
    if "_vms" in p:
        vms = p["_vms"]
        rows = [[name, vms.get(name, {}).get("fd"), vms.get(name, {}).get("ud"),
                 "chosen" if name in chosen else "kept", p["load"].get(name)]
                for name in p["vms"]]
        return "\n".join([table(["VM", "FD", "UD", "CHOICE", "GROUPS ON IT"], rows), "",
                          f"spread: {p['fault_domains']} fault domains, "
                          f"{p['update_domains']} update domains (min {p['spread']})"]
                         + [f"note: {n}" for n in p.get("notes", [])])
    rows = [[name, p["domains"].get(name), p["faults"].get(name),
             "chosen" if name in chosen else "kept", p["load"].get(name)]
            for name in p["vms"]]
    mode = p.get("maintenance_domain")
    if mode == "zone":
        spread = (f"spread: {p['maintenance_domains']} zones, {p['fault_domains']} fault "
                  "domains (zones first)")
    elif mode == "fault_domain":
        spread = f"spread: {p['fault_domains']} fault domains (the maintenance domain)"
    else:
        spread = (f"spread: {p['fault_domains']} fault domains, {p['update_domains']} update "
                  f"domains (min {p['spread']})")
    lines = [table(["VM", "DOMAIN", "FAULT DOMAIN", "CHOICE", "GROUPS ON IT"], rows), "",
             spread]
    lines += [f"note: {n}" for n in p.get("notes", [])]
    return "\n".join(lines)


def main_placement(argv: Sequence[str] | None = None) -> int:
    return _run("placement", argv, _placement_args, _placement, _show_placement)


SHORT = {"update_domain": "UD", "zone": "zone", "fault_domain": "FD"}


def _down_now(a: dict[str, Any], unit: str) -> str:
    """Members down at this moment (a maintenance in progress, or lost): apart from the
    placement verdict, which counts every known VM as up."""
    down = a.get("down_now") or []
    if not down:
        return "-"
    return ",".join(down) + ("" if a.get("now_ud_safe", True) else f"(next {unit} blocks)")


def _losses(a: dict[str, Any], kind: str, word: str) -> str:
    """`BLOCKS (zone 1)`: the units whose loss would break the group."""
    units = [b.get("unit") or str(b["domain"]) for b in a["blocking"] if b["kind"] == kind]
    return f"{word} ({', '.join(units)})" if units else "safe"


def _show_placement_audit(rows: list[dict[str, Any]], args: argparse.Namespace,
                          api: Api) -> str:
    if not rows:
        return "no groups"
    unit = SHORT.get(rows[0].get("maintenance_domain", "update_domain"), "UD")
    first = "FD MAINT" if unit == "FD" else f"{unit.upper()} LOSS"
    text = table(["GROUP", first, "FD LOSS", "LIVE", "MIN", "DOWN NOW", "FIX"],
                 [[a["group"], _losses(a, "update", "BLOCKS"), _losses(a, "fault", "BREAKS"),
                   a["live"], a["required"], _down_now(a, unit),
                   f"move {a['fix']['vm']} -> {a['fix']['to']}" if a.get("fix") else
                   ("-" if a["ud_safe"] and a["fd_safe"] else "no single move")]
                  for a in rows])
    notes = [f"{a['group']}: {a['verdict']}" + (f"; fix: {a['fix']['reason']}"
                                                 if a.get("fix") else "")
             for a in rows if not (a["ud_safe"] and a["fd_safe"])]
    return text + ("\n\n" + "\n".join(notes) if notes else "")


def main_placement_audit(argv: Sequence[str] | None = None) -> int:
    return _run("placement-audit", argv, _none,
                lambda api, a: api.call("GET", "/v1/placement/audit"), _show_placement_audit)


ENTRY_POINTS: dict[str, Callable[[Sequence[str] | None], int]] = {
    name: globals()[f"main_{name.replace('-', '_')}"] for name in SUMMARIES
}
