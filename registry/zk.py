"""One way to open a ZooKeeper session for every daemon: retries, timeouts, digest ACLs."""

from __future__ import annotations

from kazoo.client import KazooClient
from kazoo.security import ACL, make_acl, make_digest_acl


def cluster_acl(auth: str | None) -> list[ACL] | None:
    """With digest credentials: full rights for them, read-only for everyone else."""
    if not auth:
        return None
    user, _, password = auth.partition(":")
    return [make_digest_acl(user, password, all=True), make_acl("world", "anyone", read=True)]


def make_client(hosts: str, session_timeout_s: float = 10.0,
                auth: str | None = None) -> KazooClient:
    """A client that reconnects forever (bounded back-off) and retries commands briefly."""
    return KazooClient(
        hosts=hosts,
        timeout=session_timeout_s,
        auth_data=[("digest", auth)] if auth else None,
        default_acl=cluster_acl(auth),
        connection_retry={"max_tries": -1, "delay": 0.1, "backoff": 2, "max_delay": 2.0},
        command_retry={"max_tries": 2, "delay": 0.1, "max_delay": 1.0},
    )
