"""What every real workload waits for in ZooKeeper before its rollout can count: its VMs'
agents registered, and its group provider's groups published. One bounded poll each,
through the ZooKeeper adapter, raising the workload's own error when the deadline passes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from quorumgate_testbed.rollout import Rollout
from registry.records import Group
from registry.zookeeper import Client, children, make_client, read


@contextmanager
def _session(rollout: Rollout) -> Iterator[Client]:
    client = make_client(rollout.zk_hosts)
    client.start(timeout=15)
    try:
        yield client
    finally:
        client.stop()
        client.close()


def _poll(check: Callable[[], bool], deadline: float, fail: Callable[[], Exception],
          every: float) -> None:
    while not check():
        if time.monotonic() > deadline:
            raise fail()
        time.sleep(every)


def wait_registered(rollout: Rollout, vms: Sequence[str], deadline: float,
                    fail: Callable[[], Exception]) -> None:
    """Every VM of `vms` has a live registration (quorumgate knows its domains)."""
    with _session(rollout) as client:
        _poll(lambda: set(vms) <= set(children(client, rollout.layout.vms)), deadline,
              fail, 0.2)


def wait_groups(rollout: Rollout, prefix: str, vms: Sequence[str], deadline: float,
                fail: Callable[[Sequence[str]], Exception]) -> None:
    """The groups named `prefix` or `prefix-*` cover every VM of `vms` (`fail` gets the
    VMs still uncovered)."""
    covered: set[str] = set()

    def check() -> bool:
        covered.clear()
        for name in children(client, rollout.layout.groups):
            if name == prefix or name.startswith(f"{prefix}-"):
                group = read(client, rollout.layout.group(name), Group).record
                covered.update(group.members if group is not None else ())
        return covered >= set(vms)

    with _session(rollout) as client:
        _poll(check, deadline, lambda: fail(sorted(set(vms) - covered)), 0.3)
