"""The baselines: never acknowledge, acknowledge on sight, and the physical limit."""

from __future__ import annotations

import math

from bench.rollout.model import Cluster
from bench.rollout.platform import SCHEDULED, PEvent, Platform, Queue, Recorder, Span


class NeverAck:
    """Agents do nothing: every event starts at its NotBefore."""

    name = "never-ack"

    def __init__(self, cluster: Cluster, q: Queue, platform: Platform, rec: Recorder) -> None:
        self.platform = platform

    def doc_changed(self, t: float) -> None:
        pass

    def vm_down(self, vm: str, t: float, event: PEvent) -> None:
        pass

    def vm_up(self, vm: str, t: float) -> None:
        pass

    @property
    def settled(self) -> bool:
        return self.platform.done


class AckOnSight:
    """What the Azure sample does: every agent acknowledges every event it sees at its
    next poll. The first poll after an event appears starts it."""

    name = "ack-on-sight"

    def __init__(self, cluster: Cluster, q: Queue, platform: Platform, rec: Recorder) -> None:
        self.cluster = cluster
        self.q = q
        self.platform = platform
        self.poll = cluster.scenario.timing.poll_s
        self.imds_s = cluster.scenario.timing.imds_s
        self.boot_s = cluster.scenario.timing.agent_boot_s
        self.anchor = {name: vm.phase for name, vm in cluster.vms.items()}
        self.live = dict.fromkeys(cluster.vms, True)
        self.pending: tuple[float, str] | None = None

    def next_tick(self, vm: str, t: float) -> float:
        anchor = self.anchor[vm]
        return anchor + max(0, math.ceil((t - anchor) / self.poll - 1e-9)) * self.poll

    def doc_changed(self, t: float) -> None:
        self._plan(t)

    def _plan(self, t: float) -> None:
        """The first live agent to poll after `t` acknowledges every Scheduled event."""
        if not any(e.status == SCHEDULED for e in self.platform.doc()):
            return
        live = [vm for vm, up in self.live.items() if up]
        if not live:
            return
        first = min(live, key=lambda vm: (self.next_tick(vm, t), vm))
        when = self.next_tick(first, t) + self.imds_s
        if self.pending is None or when < self.pending[0]:
            self.pending = (when, first)
            self.q.at(when, self._poll, when, first)

    def _poll(self, t: float, planned: float, vm: str) -> None:
        if self.pending != (planned, vm):
            return
        self.pending = None
        if not self.live.get(vm):
            self._plan(t)
            return
        for event in self.platform.doc():  # one POST with every event's StartRequest
            if event.status == SCHEDULED:
                self.platform.acknowledge(t, event.eid, vm)

    def vm_down(self, vm: str, t: float, event: PEvent) -> None:
        self.live[vm] = False

    def vm_up(self, vm: str, t: float) -> None:
        self.q.at(t + self.boot_s, self._registered, vm)

    def _registered(self, t: float, vm: str) -> None:
        self.live[vm] = True
        self.anchor[vm] = t
        self._plan(t)

    @property
    def settled(self) -> bool:
        return self.platform.done


def physical_limit(cluster: Cluster) -> tuple[float, dict[str, list[Span]], list[float]]:
    """Each UD's slowest drain then its slowest reboot, back to back, no waiting.

    Returns (total seconds, per-VM spans for the timeline, start time of each UD)."""
    t = 0.0
    spans: dict[str, list[Span]] = {}
    starts = []
    for ud in cluster.uds:
        names = cluster.in_ud(ud)
        drain = max(cluster.vms[n].drain_s for n in names)
        reboot = max(cluster.vms[n].reboot_s for n in names)
        starts.append(t)
        eid = f"ud{ud:02d}"
        for n in names:
            vm = cluster.vms[n]
            spans[n] = [Span(t, t + vm.drain_s, "draining", eid, True),
                        Span(t + vm.drain_s, t + drain, "drained", eid, True),
                        Span(t + drain, t + drain + vm.reboot_s, "down", eid, True)]
        t += drain + reboot
    return t, spans, starts
