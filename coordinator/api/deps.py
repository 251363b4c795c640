"""Dependencies shared by the routers: the node's mirror for reads, ZooKeeper for writes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from coordinator.api.auth import NodeDep
from coordinator.store import ClusterView


class Unavailable(Exception):
    """ZooKeeper cannot serve this request now: answered 503 with the message."""


def get_view(node: NodeDep) -> ClusterView:
    """This replica's mirror. Served while disconnected too (it is the last known state,
    and /readyz says so); 503 only before it was ever loaded."""
    if not node.cache.ready:
        raise Unavailable("the ZooKeeper mirror is not loaded yet")
    return node.cache.view()


def connected(node: NodeDep) -> None:
    """Writes and direct reads need a live ZooKeeper connection: fail fast without one."""
    if not node.reconciler.connected:
        raise Unavailable("not connected to ZooKeeper; retry shortly or use another replica")


View = Annotated[ClusterView, Depends(get_view)]
Connected = Depends(connected)
