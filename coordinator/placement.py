"""Placement: where replicas should go, and which groups a rollout would block. Pure.

Safe maintenance starts at placement: a group with two of three replicas in one
*maintenance domain* (`registry.domains`: the update domain of an availability set, the
zone of zonal VMs, the fault domain of a regional Flexible scale set) can never be
maintained safely, and one with two in a fault domain loses its quorum with one rack.

`place` spreads a group's replicas over distinct maintenance and fault domains:

- availability sets: as many distinct update domains *and* fault domains as possible
  (the smaller of the two counts first, then their sum);
- zonal clusters: over zones first, then over fault domains within them (a zone's fault
  domains are its own: FD 0 in zone 1 is not FD 0 in zone 2);
- regional Flexible scale sets: over fault domains (they are the maintenance domain too).

`audit` finds the groups that one maintenance domain's maintenance or one fault domain's
failure would take below `min_available`, names the unit ("UD 1", "zone 2", "FD 0",
"FD 0 in zone 2"), and proposes the move that fixes each. A cluster whose maintenance
domain cannot be resolved (`registry.domains.resolve`: it mixes deployments and the
policy does not name the unit) gets neither: `MixedCluster` says why.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple, Protocol

from pydantic import BaseModel, ConfigDict, Field

from registry.domains import NAMES, Domain, DomainMode, Where, domain_of, resolve
from registry.records import Group, Name


class PlacementError(ValueError):
    """The cluster cannot satisfy the request; the message says why."""


class MixedCluster(PlacementError):
    """The cluster has no single maintenance domain (and the policy names none): placing
    or auditing would judge by the wrong unit. The message is `resolve`'s reason."""


class Located(Protocol):
    """What placement reads of a VM (`coordinator.safety.VMView` fits); `zone` and
    `scale_set` are read when the object has them."""

    @property
    def name(self) -> str: ...
    @property
    def fd(self) -> int | None: ...
    @property
    def ud(self) -> int | None: ...
    @property
    def live(self) -> bool: ...


def where_of(vm: Located) -> Where:
    return Where(fd=vm.fd, ud=vm.ud, zone=str(getattr(vm, "zone", "") or ""),
                 scale_set=str(getattr(vm, "scale_set", "") or ""),
                 flexible=bool(getattr(vm, "flexible", False)))


class FaultDomain(NamedTuple):
    """A fault domain (a rack): scoped by the zone in a zonal cluster."""

    zone: str
    fd: int

    def __str__(self) -> str:
        return f"FD {self.fd}" + (f" in zone {self.zone}" if self.zone else "")


def fault_of(where: Where) -> FaultDomain | None:
    return FaultDomain(where.zone, where.fd) if where.fd is not None else None


def cluster_mode(mode: DomainMode, vms: Mapping[str, Located]) -> DomainMode:
    """The concrete maintenance unit of the cluster `vms` (every known VM); MixedCluster
    when `auto` cannot pick one."""
    concrete, why = resolve(mode, ((name, where_of(v)) for name, v in vms.items()))
    if concrete is None:
        raise MixedCluster(why)
    return concrete


def describe(mode: DomainMode, where: Where) -> str:
    """A VM's place as operators read it: "FD 1, UD 3", "zone 2, FD 0", "FD 1"."""
    fd = f"FD {where.fd}" if where.fd is not None else "FD ?"
    if mode is DomainMode.UPDATE_DOMAIN:
        return f"{fd}, UD {where.ud if where.ud is not None else '?'}"
    if mode is DomainMode.ZONE:
        return f"zone {where.zone or '?'}, {fd}"
    return fd


class PlacementRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    replicas: int = Field(ge=1, le=1000, description="how many replicas the group should have")
    group: Name | None = Field(None, description="the group being placed (its own load is "
                               "not counted against candidates)")
    exclude: list[Name] = Field(default_factory=list, description="VMs never to choose")
    holding: list[Name] = Field(default_factory=list,
                                description="VMs that already hold a replica: kept")


class Placement(BaseModel):
    vms: list[Name]
    """All replicas: the ones kept from `holding`, then the chosen ones."""
    chosen: list[Name]
    fault_domains: int = Field(description="distinct known fault domains of the replicas "
                                           "(in a zonal cluster, a zone's FDs are its own)")
    update_domains: int = Field(description="distinct known update domains of the replicas")
    spread: int = Field(description="what the choice maximised first: min(distinct fault "
                                    "domains, distinct update domains) for availability "
                                    "sets, distinct zones for a zonal cluster, distinct "
                                    "fault domains for a Flexible scale set")
    load: dict[Name, int]
    """How many groups each chosen VM carries already."""
    notes: list[str] = []
    maintenance_domain: DomainMode = Field(
        DomainMode.UPDATE_DOMAIN, description="the cluster's maintenance domain the "
        "replicas were spread over: update_domain, zone or fault_domain")
    maintenance_domains: int = Field(0, description="distinct known maintenance domains "
                                                    "of the replicas")
    domains: dict[Name, str | None] = Field(
        default_factory=dict, description="each replica's maintenance domain (\"UD 3\", "
        "\"zone 2\", \"FD 1\"; null when its VM did not report it)")
    faults: dict[Name, str | None] = Field(
        default_factory=dict, description="each replica's fault domain (\"FD 1\"; in a "
        "zonal cluster \"FD 1 in zone 2\"; null when unknown)")


Keys = dict[str, tuple[Domain | None, FaultDomain | None]]
"""Each VM's maintenance domain and fault domain, worked out once per call."""


def _keys(mode: DomainMode, vms: Iterable[Located]) -> Keys:
    out: Keys = {}
    for v in vms:
        where = where_of(v)
        out[v.name] = (domain_of(mode, where), fault_of(where))
    return out


class _Spread:
    """The distinct maintenance and fault domains of a set of VMs, and its score."""

    def __init__(self, mode: DomainMode, keys: Keys, vms: Iterable[Located] = ()) -> None:
        self.mode = mode
        self.keys = keys
        self.domains: set[Domain] = set()
        self.faults: set[FaultDomain] = set()
        self.uds: set[int] = set()
        for v in vms:
            self.add(v)

    def add(self, v: Located) -> None:
        domain, fault = self.keys[v.name]
        if domain is not None:
            self.domains.add(domain)
        if fault is not None:
            self.faults.add(fault)
        if v.ud is not None:
            self.uds.add(v.ud)

    def score(self, extra: Located | None = None) -> tuple[int, int]:
        """(first, then) to maximise; an unknown domain spreads nothing."""
        domains, faults = len(self.domains), len(self.faults)
        if extra is not None:
            domain, fault = self.keys[extra.name]
            domains += domain is not None and domain not in self.domains
            faults += fault is not None and fault not in self.faults
        if self.mode is DomainMode.UPDATE_DOMAIN:
            return min(domains, faults), domains + faults
        if self.mode is DomainMode.ZONE:
            return domains, faults
        return faults, domains


def place(request: PlacementRequest, vms: Mapping[str, Located], groups: Sequence[Group],
          mode: DomainMode = DomainMode.AUTO) -> Placement:
    """Deterministic multi-start greedy: each pick maximises the spread over maintenance
    and fault domains (see the module docstring), then prefers the least-loaded VM, then
    the name; the best of several starts wins (widest spread, then least total load).
    `mode` is the policy's `maintenance_domain`: `auto` resolves it from the VMs
    (MixedCluster when they mix deployments)."""
    concrete = cluster_mode(mode, vms)
    return _place(request, vms, groups, concrete, _keys(concrete, vms.values()))


def _place(request: PlacementRequest, vms: Mapping[str, Located], groups: Sequence[Group],
           concrete: DomainMode, keys: Keys) -> Placement:
    unknown = [name for name in request.holding if name not in vms]
    if unknown:
        raise PlacementError(f"holding lists unknown VMs: {', '.join(sorted(unknown))}")
    if len(set(request.holding)) > request.replicas:
        raise PlacementError(f"{len(set(request.holding))} VMs already hold replicas, "
                             f"more than the {request.replicas} asked for")
    load = Counter(vm for g in groups if g.name != request.group for vm in set(g.members))
    kept = [vms[name] for name in dict.fromkeys(request.holding)]
    excluded = set(request.exclude) | set(request.holding)
    candidates = sorted((v for v in vms.values() if v.live and v.name not in excluded),
                        key=lambda v: v.name)
    needed = request.replicas - len(kept)
    if needed > len(candidates):
        dead = sum(1 for v in vms.values() if not v.live)
        raise PlacementError(
            f"asked for {needed} more replicas but only {len(candidates)} live VMs are "
            f"eligible ({len(vms)} known, {dead} not live, {len(excluded & set(vms))} "
            f"excluded or already holding)")
    starts = [None, *sorted(candidates, key=lambda v: (load[v.name], v.name))[:MULTI_START]]
    runs = [_greedy(concrete, keys, kept, candidates, needed, load, first) for first in starts]
    chosen = min(runs, key=lambda run: _quality(concrete, keys, kept + run, load))
    everyone = kept + chosen
    spread = _Spread(concrete, keys, everyone)
    notes = []
    if concrete is not DomainMode.FAULT_DOMAIN and len(spread.domains) < len(everyone):
        notes.append(f"only {len(spread.domains)} distinct {NAMES[concrete]}s for "
                     f"{len(everyone)} replicas")
    if len(spread.faults) < len(everyone):
        notes.append(f"only {len(spread.faults)} distinct fault domains for {len(everyone)} "
                     "replicas")
    blind = [v.name for v in everyone if keys[v.name][0] is None]
    if blind:
        notes.append(f"{', '.join(blind)} report{'s' if len(blind) == 1 else ''} no "
                     f"{NAMES[concrete]}: {'it spreads' if len(blind) == 1 else 'they spread'}"
                     " nothing")
    first, _ = spread.score()
    return Placement(vms=[v.name for v in everyone], chosen=[v.name for v in chosen],
                     fault_domains=len(spread.faults), update_domains=len(spread.uds),
                     spread=first, load={v.name: load[v.name] for v in chosen}, notes=notes,
                     maintenance_domain=concrete, maintenance_domains=len(spread.domains),
                     domains={v.name: _text(keys[v.name][0]) for v in everyone},
                     faults={v.name: _text(keys[v.name][1]) for v in everyone})


def _text(unit: Domain | FaultDomain | None) -> str | None:
    return str(unit) if unit is not None else None


MULTI_START = 24
"""Greedy runs from this many different first picks: one greedy pass can paint itself
into a corner (spread reached only through loaded VMs) that another start avoids."""


def _greedy(mode: DomainMode, keys: Keys, kept: list[Located], candidates: list[Located],
            needed: int, load: Counter[str], first: Located | None) -> list[Located]:
    pool = list(candidates)
    chosen: list[Located] = []
    spread = _Spread(mode, keys, kept)
    for _ in range(needed):
        if first is not None and not chosen:
            best = first
        else:
            def score(v: Located) -> tuple[int, int, int, str]:
                wide, then = spread.score(v)
                return (-wide, -then, load[v.name], v.name)

            best = min(pool, key=score)
        pool.remove(best)
        chosen.append(best)
        spread.add(best)
    return chosen


def _quality(mode: DomainMode, keys: Keys, vms: list[Located],
             load: Counter[str]) -> tuple[int, int, int, list[str]]:
    """Smaller is better: widest spread, then least load, then names (determinism)."""
    wide, then = _Spread(mode, keys, vms).score()
    return (-wide, -then, sum(load[v.name] for v in vms), sorted(v.name for v in vms))


# ---------------------------------------------------------------- audit


class DomainLoss(BaseModel):
    kind: str = Field(description="\"update\": the loss of one maintenance domain (a "
                                  "rollout's unit: the update domain, zone or fault domain "
                                  "`unit` names); \"fault\": one fault domain's failure "
                                  "(hardware)")
    domain: int | str = Field(description="the domain's number (the zone's name for a zone)")
    members: list[Name]
    left: int
    """Members still available if this domain goes (not counting other outages)."""
    unit: str = Field("", description="the domain as operators read it: \"UD 1\", "
                                      "\"zone 2\", \"FD 0\", \"FD 0 in zone 2\"")


class Move(BaseModel):
    vm: Name
    to: Name
    reason: str


class GroupAudit(BaseModel):
    group: Name
    members: list[Name]
    required: int
    live: int
    ud_safe: bool = Field(description="losing any one maintenance domain (update domain, "
                                      "zone or fault domain: `maintenance_domain`) keeps the "
                                      "group at or above min_available")
    fd_safe: bool = Field(description="losing any one fault domain keeps the group at or "
                                      "above min_available")
    blocking: list[DomainLoss]
    """The domain losses that would take the group below min_available."""
    fix: Move | None = None
    verdict: str
    maintenance_domain: DomainMode = Field(DomainMode.UPDATE_DOMAIN,
                                           description="the unit `ud_safe` judges")


def audit(vms: Mapping[str, Located], groups: Sequence[Group],
          mode: DomainMode = DomainMode.AUTO) -> list[GroupAudit]:
    """One line per group, worst first: would a rollout block (held, then forced) on it?
    MixedCluster when `mode` does not resolve."""
    concrete = cluster_mode(mode, vms)
    keys = _keys(concrete, vms.values())
    out = [_audit_group(g, vms, groups, concrete, keys) for g in groups]
    return sorted(out, key=lambda a: (a.ud_safe and a.fd_safe, a.group))


def _audit_group(group: Group, vms: Mapping[str, Located], groups: Sequence[Group],
                 mode: DomainMode, keys: Keys, suggest: bool = True) -> GroupAudit:
    members = list(dict.fromkeys(group.members))
    known = [vms[m] for m in members if m in vms]
    live = [v for v in known if v.live]
    required = group.required()
    blocking: list[DomainLoss] = []
    losses: tuple[tuple[str, dict[Domain | FaultDomain, list[str]]], ...] = (
        ("update", {}), ("fault", {}))
    for v in known:
        domain, fault = keys[v.name]
        if domain is not None:
            losses[0][1].setdefault(domain, []).append(v.name)
        if fault is not None:
            losses[1][1].setdefault(fault, []).append(v.name)
    for kind, by_domain in losses:
        for unit, names in sorted(by_domain.items(), key=lambda item: _order(item[0])):
            left = len(live) - sum(1 for v in live if v.name in names)
            if left < required:
                value = unit.value if isinstance(unit, Domain) else unit.fd
                blocking.append(DomainLoss(kind=kind, domain=value, unit=str(unit),
                                           members=sorted(names), left=left))
    ud_safe = not any(b.kind == "update" for b in blocking)
    fd_safe = not any(b.kind == "fault" for b in blocking)
    fix = (_fix(group, members, blocking, vms, groups, mode, keys) if blocking and suggest
           else None)
    if ud_safe and fd_safe:
        verdict = f"safe: any one {NAMES[mode]} or fault domain can go"
        if mode is DomainMode.FAULT_DOMAIN:
            verdict = "safe: any one fault domain can go"
    else:
        worst = blocking[0]
        verdict = (f"{'blocks a rollout' if not ud_safe else 'loses quorum with a rack'}: "
                   f"losing {worst.unit} ({', '.join(worst.members)}) "
                   f"leaves {worst.left} of {len(members)}, min {required}")
        missing = [m for m in members if m not in vms]
        if missing:
            verdict += f"; unknown members count as down: {', '.join(missing)}"
    return GroupAudit(group=group.name, members=members, required=required, live=len(live),
                      ud_safe=ud_safe, fd_safe=fd_safe, blocking=blocking, fix=fix,
                      verdict=verdict, maintenance_domain=mode)


def _order(unit: Domain | FaultDomain) -> tuple[str, int, str]:
    """Domains in their natural order: numbers as numbers, zones "2" before "10"."""
    if isinstance(unit, FaultDomain):
        return (unit.zone.zfill(8), unit.fd, "")
    value = unit.value
    if isinstance(value, int):
        return ("", value, "")
    return (value.zfill(8) if value.isdigit() else "", 0, value)


def _fix(group: Group, members: list[str], blocking: list[DomainLoss],
         vms: Mapping[str, Located], groups: Sequence[Group], mode: DomainMode,
         keys: Keys) -> Move | None:
    """One move that makes the group safe: the member in the most blocking domains goes
    to the VM that spreads the rest best. None when no single move is enough."""
    crowded = Counter(m for loss in blocking for m in loss.members)
    for leaving, _ in sorted(crowded.items(), key=lambda item: (-item[1], item[0])):
        staying = [m for m in members if m != leaving and m in vms]
        try:
            target = _place(PlacementRequest(replicas=len(staying) + 1, group=group.name,
                                             holding=staying, exclude=[leaving]), vms, groups,
                            mode, keys)
        except PlacementError:
            continue
        moved = Group(name=group.name, members=target.vms,
                      min_available=group.min_available)
        if _audit_group(moved, vms, groups, mode, keys, suggest=False).blocking:
            continue
        to = target.chosen[0]
        shared = list(dict.fromkeys(loss.unit for loss in blocking if leaving in loss.members))
        return Move(vm=leaving, to=to, reason=(
            f"{leaving} shares {' and '.join(shared)} with other members; {to} is in "
            f"{describe(mode, where_of(vms[to]))}"))
    return None


__all__ = ["DomainLoss", "FaultDomain", "GroupAudit", "Located", "MixedCluster",
           "Move", "Placement", "PlacementError", "PlacementRequest", "audit", "cluster_mode",
           "describe", "fault_of", "place", "where_of"]
