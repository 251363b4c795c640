"""Shared fixtures. ZooKeeper ones live in `tests/zk_fixtures.py` (read its docstring).

- `zk_hosts`     session: hosts string of one real ZooKeeper (ZK_HOSTS, local, or Docker)
- `zk_cluster`   function: a unique cluster name; `zk_layout` its `registry.layout.Layout`
- `zk`           function: connected KazooClient; the test's `/quorumgate/<zk_cluster>`
                 subtree is deleted at teardown
- `zk_server`    function: a private standalone `ZooKeeperServer` the test may stop
- `zk_ensemble`  3-node `ZooKeeperEnsemble` (module-wide, healed before each test)

Helpers for tests: `tests.helpers.wait_until`, `tests.helpers.expire_session`.
"""

from __future__ import annotations

from .zk_fixtures import (
    _zk_ensemble_module,
    zk,
    zk_cluster,
    zk_ensemble,
    zk_hosts,
    zk_layout,
    zk_server,
)

__all__ = [
    "_zk_ensemble_module",
    "zk",
    "zk_cluster",
    "zk_ensemble",
    "zk_hosts",
    "zk_layout",
    "zk_server",
]
