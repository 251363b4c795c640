"""The operator's first bad night, for real: the IMDS emulator, one agent per VM, a leading
coordinator with its API, and the `quorumgate` command run as an operator runs it.

1. A drain hook fails (exit 3, a line on stderr): the event is `failed` at once, the
   at-risk gauge (`quorumgate_events_at_risk{code="drain_failed"}`) goes to 1 long
   before NotBefore, the policy's automatic retry runs after its backoff and fails too.
2. The operator fixes the replica and runs `quorumgate retry <the 8 characters shown>`:
   the hook runs again, the event is approved, acknowledged and started by us.
3. The next update domain's event is held as unsafe (the group needs every member);
   `quorumgate force --yes` overrides the quorum check but still drains (the hook
   journal shows it).

The transcript (commands, their output, the alert's value and when) goes to
artifacts/first-bad-night.txt: the README's and OPERATIONS.md's "first bad night"
sections are written from it."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import httpx
import pytest

from quorumgate_testbed.rollout import RolloutSpec, rollout_stack
from registry.records import DecisionCode, DecisionState, Policy
from tests.helpers import wait_until

S = DecisionState
ROOT = Path(__file__).resolve().parents[1]
QUORUMGATE = ROOT / ".venv" / "bin" / "quorumgate"
ARTIFACT = ROOT / "artifacts" / "first-bad-night.txt"
SPEED = 30.0
"""Virtual seconds per real second: 15 minutes of notice last 30 s here."""


def _metric(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_first_bad_night(zk_hosts: str, zk_cluster: str, tmp_path: Path) -> None:
    if not QUORUMGATE.exists():
        pytest.skip("needs the installed console script (.venv/bin/quorumgate)")
    switch = tmp_path / "fail"
    hook = (f"if test -e {switch}-$QG_VM; then echo \"switchover of $QG_VM refused\"; "
            "echo 'patronictl: no healthy replica to switch over to' >&2; exit 3; fi; "
            "echo \"drained $QG_VM\"")
    spec = RolloutSpec(cluster={"vms": 6, "fds": 2, "uds": 3}, coordinators=1, speed=SPEED,
                       groups=[], drain_command=hook, api=True, timeout_s=120,
                       policy=Policy(drain_retries=1, drain_retry_backoff_s=60))
    transcript: list[str] = []
    log: list[str] = []

    def note(line: str) -> None:
        transcript.append(line)

    with rollout_stack(spec, zk_hosts, zk_cluster, out=log.append) as rollout:
        url = rollout.api_urls[0]
        clock = rollout.clock
        by_ud: dict[int, list[str]] = {}
        for vm, ud in sorted(rollout.ud_of.items()):
            by_ud.setdefault(ud, []).append(vm)
        # a replica group with one member per update domain, min 2: one UD at a time is safe
        group = [by_ud[ud][0] for ud in sorted(by_ud)]
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("QG_")},
               "QG_URL": url, "QG_TOKEN": rollout.operator_token}

        def qg(*args: str, show: bool = True) -> str:
            done = subprocess.run([str(QUORUMGATE), *args], env=env, capture_output=True,
                                  text=True, timeout=60)
            assert done.returncode == 0, (args, done.stdout, done.stderr)
            if show:
                note(f"$ quorumgate {shlex.join(args)}")
                transcript.extend(done.stdout.rstrip("\n").splitlines())
            return done.stdout

        def stamp() -> str:
            """Virtual seconds since the first event was scheduled (15 min of notice)."""
            return f"[t+{clock.now() - started:4.0f} s]"

        def decision(eid: str):
            return rollout.watcher.decisions.get(eid)

        qg("groups", "put", "pg", "--members", ",".join(group), "--min-available", "2",
           show=False)
        bad_vm = by_ud[0][0]
        (tmp_path / f"fail-{bad_vm}").touch()

        # 1. the drain fails; the alert is up long before NotBefore
        started = clock.now()
        eid = rollout.schedule_ud(0)
        short = eid[:8]
        note(f"[t+   0 s] the platform schedules Reboot {short} for update domain 0 "
             f"({', '.join(by_ud[0])}), NotBefore in 15 min; {bad_vm}'s drain hook will fail")
        failed = wait_until(lambda: (d := decision(eid)) and d.state is S.FAILED and d, 30,
                            message="the failed drain")
        assert failed.code is DecisionCode.DRAIN_FAILED
        assert "exit code 3" in failed.reason and "retrying in 60 s" in failed.reason
        at_risk = wait_until(lambda: _metric(
            url, 'quorumgate_events_at_risk{code="drain_failed"}'), 10)
        note(f"{stamp()} alert: quorumgate_events_at_risk{{code=\"drain_failed\"}} = "
             f"{at_risk:g}")
        qg("events", "--active")
        # the automatic retry after the backoff fails the same way
        wait_until(lambda: (d := decision(eid)) and d.retries == 1 and d.state is S.FAILED
                   and "no automatic retries left" in d.reason, 30,
                   message="the automatic retry to fail too")
        note(f"{stamp()} the automatic retry failed as well")
        qg("event", short)

        # 2. the replica is repaired; the operator retries with what the dashboard shows
        (tmp_path / f"fail-{bad_vm}").unlink()
        qg("retry", short.lower(), "--reason", "replica repaired")
        wait_until(lambda: (d := decision(eid)) and d.state in (
            S.APPROVED, S.ACKNOWLEDGED, S.STARTED, S.COMPLETED, S.RESTORED), 30,
            message="the retried event to be approved")
        note(f"{stamp()} retried drain succeeded; event approved")
        wait_until(lambda: rollout.settled(eid), 60, message="the event to finish")
        over = decision(eid)
        assert over.state is S.RESTORED and over.ours, "acknowledged by us, not forced"
        assert _metric(url, "quorumgate_forced_events_total") == 0
        assert _metric(url, 'quorumgate_events_at_risk{code="drain_failed"}') == 0
        note(f"{stamp()} event {short} restored; the alert cleared")

        # 3. a replica is lost for good: pg needs all three members, so the next UD's
        #    event is held as unsafe; the operator forces it, and it still drains
        qg("groups", "put", "pg", "--members", ",".join(group), "--min-available", "3",
           show=False)
        eid2 = rollout.schedule_ud(1)
        short2 = eid2[:8]
        note(f"{stamp()} pg now needs all 3 members; the platform schedules Reboot {short2} "
             f"for update domain 1 ({', '.join(by_ud[1])})")
        wait_until(lambda: (d := decision(eid2)) and d.state is S.HELD
                   and d.code is DecisionCode.UNSAFE_GROUP, 30, message="the unsafe hold")
        held_metric = 'quorumgate_events_at_risk{code="unsafe_group"}'
        value = wait_until(lambda: _metric(url, held_metric), 10)
        note(f"{stamp()} alert: {held_metric} = {value:g}")
        qg("events", "--active")
        qg("force", short2, "--reason", "security patch, cannot wait", "--yes")
        wait_until(lambda: (d := decision(eid2)) and d.state in (
            S.APPROVED, S.ACKNOWLEDGED, S.STARTED, S.COMPLETED, S.RESTORED), 30,
            message="the forced event to be approved")
        forced = decision(eid2)
        assert forced.force_reason and not forced.force_skip_drain
        drained = {vm for vm, _, action, event, phase, code in rollout.journal.entries(clock)
                   if action == "drain" and event == eid2 and phase == "end" and code == 0}
        assert drained == set(by_ud[1]), "a force still drains every VM of the event"
        note(f"{stamp()} forced event drained {', '.join(sorted(drained))}, then approved")
        qg("event", short2)
        wait_until(lambda: rollout.settled(eid2), 60, message="the forced event to finish")
        qg("audit", "--limit", "12")
    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.write_text("\n".join(transcript) + "\n")


def test_dry_run_first_step_is_never_forced(zk_hosts: str, zk_cluster: str) -> None:
    """Dry-run, the recommended first step: the platform starts every event at NotBefore
    (we acknowledge nothing), and that is not a forced start — no forced counter, no
    at-risk alert, every decision labelled dry-run, one story in the timeline."""
    if not QUORUMGATE.exists():
        pytest.skip("needs the installed console script (.venv/bin/quorumgate)")
    spec = RolloutSpec(cluster={"vms": 4, "fds": 2, "uds": 2}, coordinators=1, speed=120,
                       groups=[], drain_command="echo drained", api=True, timeout_s=60,
                       policy=Policy(dry_run=True))
    with rollout_stack(spec, zk_hosts, zk_cluster, out=lambda line: None) as rollout:
        url = rollout.api_urls[0]
        eid = rollout.schedule_ud(0)
        wait_until(lambda: rollout.settled(eid), 45, message="the dry-run event to end")
        decision = rollout.watcher.decisions[eid]
        assert decision.dry_run and decision.state is S.RESTORED and not decision.ours
        assert all(t.to is not S.FORCED for t in decision.history)
        assert _metric(url, "quorumgate_forced_events_total") == 0
        assert _metric(url, 'quorumgate_events{dry_run="true",state="restored"}') == 1
        assert _metric(url, 'quorumgate_events{dry_run="false",state="restored"}') == 0
        assert not rollout.journal.entries(rollout.clock), "no hook ran in dry-run"
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("QG_")},
               "QG_URL": url, "QG_TOKEN": rollout.viewer_token}
        shown = subprocess.run([str(QUORUMGATE), "events"], env=env, capture_output=True,
                               text=True, timeout=60)
        assert shown.returncode == 0 and "[dry-run]" in shown.stdout
        assert "forced" not in shown.stdout
        steps = " / ".join(t.reason for t in decision.history)
        assert "nothing to drain" not in steps, steps
