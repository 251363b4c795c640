"""Repairs from the operator's chair, against a real coordinator leader on a real ZooKeeper:
`quorumgate forget VM` releases what waited for a VM deleted for good, and
`quorumgate unreadable` lists and removes records that block admissions (issue 12.5/12.7)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from kazoo.client import KazooClient

from coordinator.store import ensure_layout
from registry.codec import decode, encode
from registry.layout import Layout
from registry.records import Decision, DecisionState, PlatformEvent, PlatformStatus
from tests.coordinator.test_api_support import OPERATOR, put_group, register, running, schedule
from tests.helpers import wait_until

S = DecisionState
QUORUMGATE = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "quorumgate"


def qg(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QG_")}
    return subprocess.run([str(QUORUMGATE), *args], env={**env, "QG_URL": url,
                                                          "QG_TOKEN": OPERATOR},
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=60)


def decision(zk: KazooClient, layout: Layout, eid: str) -> Decision | None:
    path = layout.decision(eid)
    return decode(Decision, zk.get(path)[0]) if zk.exists(path) else None


def test_forget_a_deleted_vm_releases_what_waited_for_it(zk_hosts: str, zk: KazooClient,
                                                          zk_layout: Layout) -> None:
    layout = zk_layout
    ensure_layout(zk, layout)
    for i in range(4):
        register(zk, layout, f"vm-{i}", fd=i % 2, ud=i % 2)
    # a Reboot started without us; vm-2 then went away for good (deleted elsewhere)
    schedule(zk, layout, "E1", ["vm-2"], status=PlatformStatus.STARTED)
    zk.delete(layout.vm("vm-2"))
    with running(zk_hosts, layout) as api:
        wait_until(lambda: api.node.reconciler.is_leader, 10)
        wait_until(lambda: (d := decision(zk, layout, "E1")) and d.state is S.FORCED, 10)
        data, stat = zk.get(layout.event("E1"))
        gone = decode(PlatformEvent, data).model_copy(update={
            "status": PlatformStatus.GONE, "gone_at": 0.0, "gone_by": ["vm-0"]})
        zk.set(layout.event("E1"), encode(gone), version=stat.version)
        waiting = wait_until(lambda: (d := decision(zk, layout, "E1")) and
                             d.state is S.COMPLETED and d, 10)
        assert waiting.reserved == ["vm-2"] and "waiting for vm-2" in waiting.reason
        refused = qg("forget", "vm-0", "--yes", url=api.url)
        assert refused.returncode == 1 and "registered" in refused.stderr
        assert qg("forget", "vm-2", url=api.url).returncode == 1, "asks; no stdin is a no"
        done = qg("forget", "vm-2", "--yes", url=api.url)
        assert done.returncode == 0, done.stderr
        assert "vm-state/vm-2" in done.stdout
        wait_until(lambda: (d := decision(zk, layout, "E1")) and d.state is S.RESTORED
                   and d.reserved == [], 10, message="the event to stop waiting for vm-2")
        assert zk.exists(layout.vm_state("vm-2")) is None
        audit = qg("audit", url=api.url)
        assert "vm:forget" in audit.stdout
        assert qg("forget", "vm-2", "--yes", url=api.url).returncode == 1  # 404 now


def test_unreadable_records_are_listed_and_removed(zk_hosts: str, zk: KazooClient,
                                                   zk_layout: Layout) -> None:
    layout = zk_layout
    ensure_layout(zk, layout)
    for i in range(3):
        register(zk, layout, f"vm-{i}", fd=i, ud=i)
    put_group(zk, layout, "ok", ["vm-0", "vm-1", "vm-2"], 2)
    zk.create(layout.group("typo"), b'{"name": "typo", "members": ["vm-1"], '
                                    b'"min_available": "75%"}')
    schedule(zk, layout, "E1", ["vm-0"])
    with running(zk_hosts, layout) as api:
        held = wait_until(lambda: (d := decision(zk, layout, "E1")) and d.state is S.HELD
                          and d, 10)
        assert "group typo does not decode" in held.reason
        listed = qg("unreadable", url=api.url)
        assert listed.returncode == 0 and "typo" in listed.stdout
        assert "every admission" in listed.stdout
        fine = qg("unreadable", "delete", "groups", "ok", url=api.url)
        assert fine.returncode == 1 and "decodes" in fine.stderr
        gone = qg("unreadable", "delete", "groups", "typo", url=api.url)
        assert gone.returncode == 0, gone.stderr
        wait_until(lambda: (d := decision(zk, layout, "E1")) and d.state is S.DRAINING, 10)
        assert qg("unreadable", url=api.url).stdout.strip() == "every record decodes"
