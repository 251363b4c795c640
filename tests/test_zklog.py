"""ZooKeeper's transaction log, read back: what the chaos checker takes request times from."""

from __future__ import annotations

import time

from kazoo.client import KazooClient

from quorumgate import zklog
from quorumgate.zkserver import ZooKeeperServer


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
