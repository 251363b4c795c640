"""ZooKeeper's transaction log, read back: what the chaos checker takes request times from."""

from __future__ import annotations

import time

from kazoo.client import KazooClient

from quorumgate_testbed import zklog
from quorumgate_testbed.zkserver import ZooKeeperServer


def test_committed_writes_come_back_with_zookeepers_time(zk_server: ZooKeeperServer) -> None:
    client = KazooClient(hosts=zk_server.hosts, timeout=10)
    client.start(timeout=30)
    before = time.time()
    try:
        client.create("/zl/drain/vm-1", b'{"n": 1}', makepath=True)
        client.set("/zl/drain/vm-1", b'{"n": 2}')
        ok = client.transaction()
        ok.set_data("/zl/drain/vm-1", b'{"n": 3}')
        ok.create("/zl/drain/vm-2", b'{"n": 4}')
        assert not any(isinstance(r, Exception) for r in ok.commit())
        failed = client.transaction()  # fails on its second operation: nothing applies
        failed.set_data("/zl/drain/vm-1", b'{"n": 5}')
        failed.create("/zl/missing/parent/x", b"")
        assert any(isinstance(r, Exception) for r in failed.commit())
    finally:
        client.stop()
        client.close()
    writes = zklog.committed_writes([zk_server.data_dir], quorum=1, under="/zl/drain/")
    assert [(w.path, w.data) for w in writes] == [
        ("/zl/drain/vm-1", b'{"n": 1}'), ("/zl/drain/vm-1", b'{"n": 2}'),
        ("/zl/drain/vm-1", b'{"n": 3}'), ("/zl/drain/vm-2", b'{"n": 4}')]
    assert all(before - 1 <= w.time_ms / 1000 <= time.time() + 1 for w in writes)
    assert writes[2].zxid == writes[3].zxid  # one transaction
    # a write must be on a majority of the logs to count
    assert zklog.committed_writes([zk_server.data_dir], quorum=2, under="/zl/") == []


def test_fenced_writes_are_replayed_against_the_election(zk_server: ZooKeeperServer) -> None:
    """Only the lowest live election znode leads: a write fenced on any other znode (even
    an existing one, which ZooKeeper's check lets through) is reported."""
    first = KazooClient(hosts=zk_server.hosts, timeout=10)
    second = KazooClient(hosts=zk_server.hosts, timeout=10)
    for client in (first, second):
        client.start(timeout=30)
    try:
        first.ensure_path("/zf/election")
        mine = first.create("/zf/election/a__lock__", b"", ephemeral=True, sequence=True)
        theirs = second.create("/zf/election/b__lock__", b"", ephemeral=True, sequence=True)

        def fenced(client: KazooClient, node: str, value: bytes) -> None:
            txn = client.transaction()
            txn.check(node, 0)
            txn.create("/zf/w-", value, sequence=True)
            assert not any(isinstance(r, Exception) for r in txn.commit())

        fenced(first, mine, b"leader")
        fenced(second, theirs, b"not the leader")  # its znode exists: the check passes
        first.stop()  # closes the session: its znode goes, the second leads now
        fenced(second, theirs, b"new leader")
    finally:
        for client in (first, second):
            client.stop()
            client.close()
    txns = zklog.committed_txns([zk_server.data_dir], quorum=1)
    writes, writers, problems = zklog.fencing_violations(txns, "/zf/election")
    assert writes == 3 and len(writers) == 2
    assert len(problems) == 1 and "while a__lock__" in problems[0], problems
