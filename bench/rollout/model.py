"""The simulated cluster of the rollout benchmark: placement, groups, durations. Seeded.

Everything random is drawn here, once per scenario, in a fixed order, so every strategy
of a run sees the same cluster, the same event types and the same durations.

Stated model (bench/README.md repeats it):

- VM i is in fault domain `i % fds` and update domain `i % uds` (Azure's round-robin).
- Replica groups of 3, `min_available` 2. Well-placed groups have their replicas in 3
  distinct FDs and 3 distinct UDs. A share `bad_share` of the groups (at least one when
  the share is positive) is badly placed: two replicas in the same UD (distinct FDs),
  the third elsewhere. VMs left over when the count is not a multiple of 3 are in no
  group.
- One platform event per UD, naming every VM of that UD: Reboot (15 min notice) with
  probability `1 - redeploy_share`, else Redeploy (10 min notice).
- Per VM, drawn independently: reboot time (down) `lognormal(median 150 s, sigma 0.35)`
  clipped to [45, 900] s, times 1.5 for a Redeploy; drain hook
  `lognormal(median 30 s, sigma 0.6)` clipped to [2, 300] s; restore hook
  `lognormal(median 5 s, sigma 0.5)` clipped to [1, 60] s.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from registry.records import EventType

NOTICE_S = {EventType.REBOOT: 15 * 60.0, EventType.REDEPLOY: 10 * 60.0}
"""Azure's notice (2017 API): Reboot 15 min, Redeploy 10 min."""


@dataclass(frozen=True)
class LogNormal:
    """`median * exp(sigma * N(0, 1))`, clipped to [low, high]."""

    median: float
    sigma: float
    low: float
    high: float

    def draw(self, rng: random.Random) -> float:
        return min(self.high, max(self.low, self.median * math.exp(self.sigma *
                                                                  rng.gauss(0.0, 1.0))))

    def describe(self) -> str:
        return (f"lognormal(median {self.median:g} s, sigma {self.sigma:g}) in "
                f"[{self.low:g}, {self.high:g}] s")


REBOOT = LogNormal(150.0, 0.35, 45.0, 900.0)
DRAIN = LogNormal(30.0, 0.6, 2.0, 300.0)
RESTORE = LogNormal(5.0, 0.5, 1.0, 60.0)
REDEPLOY_FACTOR = 1.5


@dataclass(frozen=True)
class Timing:
    """Latencies of the model, in seconds. Small next to drains and reboots on purpose:
    they are what a loopback or LAN ZooKeeper and link-local IMDS cost."""

    poll_s: float = 1.0
    """Agents' IMDS poll interval (each agent has its own random phase)."""
    zk_op_s: float = 0.002
    """One ZooKeeper round trip (a read, a write or a transaction)."""
    notify_s: float = 0.002
    """From a write landing to a watcher (coordinator mirror, agent) being woken."""
    imds_s: float = 0.001
    """One IMDS request (link-local)."""
    decide_s: float = 0.002
    """Modelled cost of the core in one coordinator pass (the virtual clock never
    reads the wall clock; bench.scale measures the real figure)."""
    resync_s: float = 1.0
    """The coordinator runs a pass at least this often (CoordinatorConfig.resync_s)."""
    agent_boot_s: float = 1.0
    """From a VM being back up to its agent registered again."""


@dataclass(frozen=True)
class Scenario:
    vms: int = 15
    fds: int = 3
    uds: int = 5
    bad_share: float = 0.01
    """Share of groups placed badly (two replicas in one UD); at least one if > 0."""
    redeploy_share: float = 0.2
    walk: str = "sequential"
    """`sequential`: Azure's UD walk, the next UD's event once the previous UD's VMs are
    back; `together`: every UD's event announced at once."""
    seed: int = 1
    timing: Timing = field(default_factory=Timing)

    @property
    def name(self) -> str:
        bad = "bad" if self.bad_share > 0 else "well-placed"
        return f"{self.vms} VMs {self.uds} UDs {bad} {self.walk}"

    @property
    def slug(self) -> str:
        bad = "bad" if self.bad_share > 0 else "good"
        return f"{self.vms}vm-{self.uds}ud-{bad}-{self.walk}"


@dataclass(frozen=True)
class VM:
    name: str
    fd: int
    ud: int
    reboot_s: float
    drain_s: float
    restore_s: float
    phase: float
    """Offset of the agent's first poll within the poll interval."""


@dataclass(frozen=True)
class GroupSpec:
    name: str
    members: tuple[str, ...]
    bad: bool
    min_available: int = 2


@dataclass(frozen=True)
class Cluster:
    scenario: Scenario
    vms: dict[str, VM]
    groups: list[GroupSpec]
    event_types: dict[int, EventType]
    """The platform event type of each UD."""

    def in_ud(self, ud: int) -> list[str]:
        return [name for name, vm in self.vms.items() if vm.ud == ud]

    @property
    def uds(self) -> list[int]:
        return sorted({vm.ud for vm in self.vms.values()})


def build(scenario: Scenario) -> Cluster:
    rng = random.Random(scenario.seed)
    s = scenario
    event_types = {ud: (EventType.REDEPLOY if rng.random() < s.redeploy_share
                        else EventType.REBOOT) for ud in range(s.uds)}
    vms: dict[str, VM] = {}
    for i in range(s.vms):
        ud = i % s.uds
        factor = REDEPLOY_FACTOR if event_types[ud] is EventType.REDEPLOY else 1.0
        vms[f"vm-{i}"] = VM(name=f"vm-{i}", fd=i % s.fds, ud=ud,
                            reboot_s=REBOOT.draw(rng) * factor, drain_s=DRAIN.draw(rng),
                            restore_s=RESTORE.draw(rng), phase=rng.random() * s.timing.poll_s)
    groups = place_groups(vms, s, rng)
    return Cluster(s, vms, groups, event_types)


def place_groups(vms: dict[str, VM], s: Scenario, rng: random.Random) -> list[GroupSpec]:
    count = len(vms) // 3
    bad_count = 0 if s.bad_share <= 0 else max(1, round(count * s.bad_share))
    for _ in range(200):
        groups = _try_place(vms, count, bad_count, rng)
        if groups is not None:
            return groups
    raise RuntimeError(f"could not place {count} groups over {s.fds} FDs x {s.uds} UDs")


def _try_place(vms: dict[str, VM], count: int, bad_count: int,
               rng: random.Random) -> list[GroupSpec] | None:
    free = list(vms)
    rng.shuffle(free)
    groups: list[GroupSpec] = []
    for g in range(count):
        bad = g < bad_count
        members: list[str] = []
        for vm_name in free:
            vm = vms[vm_name]
            fds = {vms[m].fd for m in members}
            uds = {vms[m].ud for m in members}
            if vm.fd in fds:
                continue
            # a bad group's second replica shares the first one's UD
            ok = vm.ud in uds if bad and len(members) == 1 else vm.ud not in uds
            if ok:
                members.append(vm_name)
                if len(members) == 3:
                    break
        if len(members) < 3:
            return None
        for m in members:
            free.remove(m)
        groups.append(GroupSpec(name=f"{'bad' if bad else 'rg'}-{g}", members=tuple(members),
                                bad=bad))
    return groups
