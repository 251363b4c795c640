"""Where the time goes between an event appearing in IMDS and its acknowledgement.

Every hop is timed from the records themselves, never from when a poll read them:
ZooKeeper's own `ctime`/`mtime` of the event's relay record, of each VM's drain record
at the version that reported it drained and of the acknowledgement claim; the
decision's own history; the emulator's account of the event's creation and of the POST
it received. The watches that collect ZooKeeper's times are server-pushed, so the
recorder adds no polling load to the machine it measures.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from registry.clock import Clock
from registry.codec import decode
from registry.layout import Layout
from registry.records import Decision, DecisionState, DrainRecord, DrainStatus
from registry.zookeeper import Client, data_watch

S = DecisionState

HOPS = (
    ("sight", "created -> relay write", "the agents' IMDS poll, then the relay's write"),
    ("decide", "relay write -> draining", "the leader's watch and pass"),
    ("drain", "draining -> last drained", "drain watch, hook, report (slowest VM)"),
    ("approve", "last drained -> approved", "the leader's watch and pass"),
    ("wake", "approved -> claim", "the acker's watch, its IMDS check, the claim"),
    ("post", "claim -> POST received", "the acknowledgement POST"),
)


@dataclass
class EventTimes:
    """One event's moments, in the stack's clock."""

    vms: tuple[str, ...]
    created: float | None = None
    relayed: float | None = None
    draining: float | None = None
    drained: dict[str, float] = field(default_factory=dict)
    approved: float | None = None
    claimed: float | None = None
    posted: float | None = None

    def hops(self) -> dict[str, float] | None:
        """Seconds per hop, or None when a moment is missing (the event was not ours)."""
        last_drained = max(self.drained.values()) if len(self.drained) == len(self.vms) \
            else None
        points = (self.created, self.relayed, self.draining, last_drained, self.approved,
                  self.claimed, self.posted)
        if any(p is None for p in points):
            return None
        steps = [b - a for a, b in zip(points, points[1:], strict=False)]  # type: ignore[operator]
        return {key: step for (key, _, _), step in zip(HOPS, steps, strict=True)}


class HopRecorder:
    """Collects ZooKeeper's times for the events it is told to follow."""

    def __init__(self, client: Client, layout: Layout, clock: Clock) -> None:
        self.client = client
        self.layout = layout
        self.clock = clock
        self.events: dict[str, EventTimes] = {}
        self._lock = threading.Lock()
        self._watches: list[Any] = []

    def _virtual(self, zk_ms: int) -> float:
        """ZooKeeper stamps real milliseconds; the stack may run a sped-up clock."""
        speed = 1.0 / self.clock.real_seconds(1.0)
        return self.clock.now() - (time.time() - zk_ms / 1000.0) * speed

    def follow(self, event_id: str, vms: tuple[str, ...]) -> None:
        times = self.events[event_id] = EventTimes(vms=vms)

        def created_once(attr: str) -> Any:
            def on_change(data: bytes | None, stat: Any) -> bool | None:
                if stat is None:
                    return None
                with self._lock:
                    setattr(times, attr, self._virtual(stat.ctime))
                return False
            return on_change

        def on_drain(vm: str) -> Any:
            def on_change(data: bytes | None, stat: Any) -> bool | None:
                if stat is None or not data:
                    return None
                rec = decode(DrainRecord, data)
                if rec is None or rec.event_id != event_id:
                    return None
                if rec.status is DrainStatus.DRAINED:
                    with self._lock:
                        times.drained.setdefault(vm, self._virtual(stat.mtime))
                    return False
                return None
            return on_change

        self._watches.append(data_watch(self.client, self.layout.event(event_id),
                                        created_once("relayed")))
        self._watches.append(data_watch(self.client, self.layout.ack(event_id),
                                        created_once("claimed")))
        for vm in vms:
            self._watches.append(data_watch(self.client, self.layout.drain(vm), on_drain(vm)))

    def finish(self, event_id: str, created: float, posted: float | None,
               decision: Decision | None) -> EventTimes:
        """Add the emulator's and the decision's moments to what ZooKeeper told us."""
        times = self.events[event_id]
        times.created, times.posted = created, posted
        for turn in decision.history if decision else ():
            if turn.to is S.DRAINING and times.draining is None:
                times.draining = turn.at
            if turn.to is S.APPROVED and times.approved is None:
                times.approved = turn.at
        return times
