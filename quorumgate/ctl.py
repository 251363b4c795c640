"""Operator commands against the coordinator REST API.

    quorumgate status
    quorumgate vms [--state S] [--grid]
    quorumgate events [--active] [--state S]
    quorumgate event ID
    quorumgate hold ID --reason TEXT | release ID [--reason] | force ID --reason TEXT
    quorumgate pause [--reason TEXT] | resume [--reason TEXT]
    quorumgate groups [list | show NAME | put NAME --members a,b,c [--min-available N]
                       [--health-gate G] | delete NAME]
    quorumgate audit [--limit N]
    quorumgate placement --replicas N [--group G] [--exclude a,b] [--holding c,d]
    quorumgate placement-audit

Every command takes `--url` (default $QG_URL, else http://127.0.0.1:8080), `--token`
(default $QG_TOKEN; viewer for reads, operator for actions), `--timeout` and `--json`
(the API's JSON on stdout, for scripts). Tables otherwise.

Exit codes: 0 done; 1 the request failed (the message on stderr names the problem:
connection refused, 401 no or unknown token, 403 role too low, 404 no such thing,
409 conflict, 422 invalid request, 503 coordinator unavailable); 2 bad arguments.
Each command has its entry point `main_<command>(argv)` (see `quorumgate.cli.COMMANDS`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import quote

import httpx

DEFAULT_URL = "http://127.0.0.1:8080"
SUMMARIES = {
    "status": "cluster and coordinator status at a glance",
    "vms": "VMs with fault/update domain and state (--grid: the FD x UD grid)",
    "events": "scheduled events with our decision and its reason",
    "event": "one event: platform view, decision, timeline, acknowledgement",
    "hold": "hold an event (no drain, no approval) with a reason",
    "release": "release an operator hold",
    "force": "force-approve an event, bypassing the safety check (reason required)",
    "pause": "pause every new drain and approval",
    "resume": "resume drains and approvals",
    "groups": "replica groups: list, show, put, delete",
    "audit": "the audit log, newest last",
    "placement": "choose VMs for N replicas spread over fault and update domains",
    "placement-audit": "groups that one UD or FD loss would break, with the fix",
}


class CtlError(Exception):
    """The request failed; the message says why (shown on stderr, exit 1)."""


# ---------------------------------------------------------------- HTTP


class Api:
    def __init__(self, url: str, token: str, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        headers = {"Accept": "application/json", "User-Agent": "quorumgate-ctl"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout,
                                 follow_redirects=False)

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
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
            return f"503 coordinator unavailable: {detail}; retry shortly or use another replica"
        return f"{code} {response.reason_phrase}: {detail}"


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
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or "-"
    return str(value)


def pairs(items: Sequence[tuple[str, Any]]) -> str:
    width = max(len(k) for k, _ in items)
    return "\n".join(f"{k + ':':<{width + 1}}  {_cell(v)}" for k, v in items)


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


def _run(name: str, argv: Sequence[str] | None,
         configure: Callable[[argparse.ArgumentParser], None],
         act: Callable[[Api, argparse.Namespace], Any],
         show: Callable[[Any, argparse.Namespace, Api], str]) -> int:
    parser = _parser(name)
    configure(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    api = Api(args.url, args.token, args.timeout)
    try:
        result = act(api, args)
        text = json.dumps(result, indent=2) if args.json else show(result, args, api)
    except CtlError as exc:
        print(f"quorumgate {name}: error: {exc}", file=sys.stderr)
        return 1
    finally:
        api.close()
    if text:
        print(text)
    return 0


def _none(parser: argparse.ArgumentParser) -> None:
    return None


# status ------------------------------------------------------------


def _show_status(s: dict[str, Any], args: argparse.Namespace, api: Api) -> str:
    counts = ", ".join(f"{k} {v}" for k, v in s["counts"].items() if v) or "none"
    leader = s["leader"] or "unknown"
    last = s["last_pass"]
    return pairs([
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
    ])


def main_status(argv: Sequence[str] | None = None) -> int:
    return _run("status", argv, _none, lambda api, a: api.call("GET", "/v1/status"),
                _show_status)


# vms ---------------------------------------------------------------

VM_STATES = ("up", "draining", "drain_failed", "drained", "rebooting", "restoring", "lost")


def _vms_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state", choices=VM_STATES, help="only VMs in this state")
    p.add_argument("--grid", action="store_true", help="the FD x UD grid (GET /v1/topology)")


def _vms(api: Api, args: argparse.Namespace) -> Any:
    if args.grid:
        return api.call("GET", "/v1/topology")
    rows = api.call("GET", "/v1/vms")
    return [r for r in rows if args.state is None or r["state"] == args.state]


def _show_vms(result: Any, args: argparse.Namespace, api: Api) -> str:
    if args.grid:
        return grid_text(result)
    if not result:
        return "no VMs" + (f" in state {args.state}" if args.state else "")
    return table(["NAME", "FD", "UD", "STATE", "LIVE", "RESERVED BY", "GROUPS", "ADDRESS"],
                 [[r["name"], r["fd"], r["ud"], r["state"], r["live"], r["reserved_by"],
                   r["groups"], r["address"] or None] for r in result])


def grid_text(topology: dict[str, Any]) -> str:
    cells = {(c["fd"], c["ud"]): c["vms"] for c in topology["cells"]}
    rows = [[f"FD {fd}"] + [" ".join(f"{v['name']}({v['state']})" if v["state"] != "up"
                                     else v["name"] for v in cells.get((fd, ud), [])) or "."
                            for ud in topology["uds"]]
            for fd in topology["fds"]]
    text = table([""] + [f"UD {ud}" for ud in topology["uds"]], rows)
    if topology.get("unplaced"):
        text += "\nwithout FD/UD: " + " ".join(v["name"] for v in topology["unplaced"])
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


def _reason(e: dict[str, Any]) -> str:
    parts = [e.get("reason") or ""]
    if e.get("operator_hold"):
        parts.append(f"[operator hold: {e['operator_hold']}]")
    if e.get("force_reason"):
        parts.append(f"[operator force: {e['force_reason']}]")
    return " ".join(p for p in parts if p)


def _show_events(rows: list[dict[str, Any]], args: argparse.Namespace, api: Api) -> str:
    if not rows:
        return "no events" + (" active" if args.active else "")
    now = _server_now(api)
    return table(["EVENT", "TYPE", "PLATFORM", "STATE", "NOT BEFORE", "VMS", "REASON"],
                 [[e["event_id"], e["event_type"], e["status"], e["state"],
                   relative(e["not_before"], now), e["resources"], clip(_reason(e))]
                  for e in rows])


def main_events(argv: Sequence[str] | None = None) -> int:
    return _run("events", argv, _events_args, _events, _show_events)


def _event_id(p: argparse.ArgumentParser) -> None:
    p.add_argument("event_id", metavar="ID", help="the event id")


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
        ("state", e["state"]),
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
        ("operator hold", e["operator_hold"] or "-"),
        ("operator force", e["force_reason"] or "-"),
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
        if o.get("hold"):
            lines.append(f"  hold: {o['hold']}")
        if o.get("force"):
            lines.append(f"  force: {o['force']}")
        lines.append("  the leader applies it at its next decision pass "
                     f"(quorumgate event {o['event_id']})")
        return "\n".join(lines)
    return show


def main_hold(argv: Sequence[str] | None = None) -> int:
    return _run("hold", argv, _reason_arg(True), _override("hold"), _show_override("hold"))


def main_release(argv: Sequence[str] | None = None) -> int:
    return _run("release", argv, _reason_arg(False), _override("release"),
                _show_override("release"))


def main_force(argv: Sequence[str] | None = None) -> int:
    return _run("force", argv, _reason_arg(True), _override("force"), _show_override("force"))


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


# groups ------------------------------------------------------------


def _groups_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="{list,show,put,delete}")
    common_options(sub.add_parser("list", help="every group with its availability "
                                               "(the default)"), subcommand=True)
    show = sub.add_parser("show", help="one group")
    show.add_argument("name")
    put = sub.add_parser("put", help="create or replace a group (operator)")
    put.add_argument("name")
    put.add_argument("--members", action="append", required=True,
                     help="comma-separated VM names (repeatable)")
    put.add_argument("--min-available", default="majority",
                     help='a count, or "majority" (the default)')
    put.add_argument("--health-gate", default="",
                     help="URL that must answer 2xx, or command that must exit 0")
    delete = sub.add_parser("delete", help="delete a group (operator)")
    delete.add_argument("name")
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
        return api.call("PUT", path, json=body)
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
    if not args.json:  # the table shows each VM's domains
        placement["_vms"] = {v["name"]: v for v in api.call("GET", "/v1/vms")}
    return placement


def _show_placement(p: dict[str, Any], args: argparse.Namespace, api: Api) -> str:
    vms = p.get("_vms", {})
    chosen = set(p["chosen"])
    rows = [[name, vms.get(name, {}).get("fd"), vms.get(name, {}).get("ud"),
             "chosen" if name in chosen else "kept", p["load"].get(name)]
            for name in p["vms"]]
    lines = [table(["VM", "FD", "UD", "CHOICE", "GROUPS ON IT"], rows), "",
             f"spread: {p['fault_domains']} fault domains, {p['update_domains']} update "
             f"domains (min {p['spread']})"]
    lines += [f"note: {n}" for n in p.get("notes", [])]
    return "\n".join(lines)


def main_placement(argv: Sequence[str] | None = None) -> int:
    return _run("placement", argv, _placement_args, _placement, _show_placement)


def _show_placement_audit(rows: list[dict[str, Any]], args: argparse.Namespace,
                          api: Api) -> str:
    if not rows:
        return "no groups"
    text = table(["GROUP", "UD LOSS", "FD LOSS", "LIVE", "MIN", "FIX"],
                 [[a["group"], "safe" if a["ud_safe"] else "BLOCKS",
                   "safe" if a["fd_safe"] else "BREAKS", a["live"], a["required"],
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
