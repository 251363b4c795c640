"""Kept for importers that predate the adapter: the session factory lives in
`registry.zookeeper`, with every other ZooKeeper call."""

from __future__ import annotations

from registry.zookeeper import cluster_acl, make_client

__all__ = ["cluster_acl", "make_client"]
