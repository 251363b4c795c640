"""Placement: where replicas should go, and which groups a rollout would block. Pure.

Safe maintenance starts at placement: a group with two of three replicas in one update
domain can never be maintained safely, and one with two in a fault domain loses its
quorum with one rack. `place` spreads a group's replicas over distinct fault and update
domains; `audit` finds the groups that one update domain's maintenance or one fault
domain's failure would take below `min_available`, and proposes the move that fixes each.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

from coordinator.safety import VMView
from registry.records import Group, Name


class PlacementError(ValueError):
    """The cluster cannot satisfy the request; the message says why."""


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
    fault_domains: int
    update_domains: int
    spread: int
    """min(distinct fault domains, distinct update domains): what the choice maximised."""
    load: dict[Name, int]
    """How many groups each chosen VM carries already."""
    notes: list[str] = []


def _domains(vms: Iterable[VMView]) -> tuple[set[int], set[int]]:
    """Distinct known fault and update domains (an unknown domain spreads nothing)."""
    chosen = list(vms)
    return ({v.fd for v in chosen if v.fd is not None},
            {v.ud for v in chosen if v.ud is not None})


def place(request: PlacementRequest, vms: Mapping[str, VMView],
          groups: Sequence[Group]) -> Placement:
    """Deterministic multi-start greedy: each pick maximises the smaller of the distinct FD
    and UD counts, then their sum, then prefers the least-loaded VM, then the name; the
    best of several starts wins (widest spread, then least total load)."""
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
    runs = [_greedy(kept, candidates, needed, load, first) for first in starts]
    chosen = min(runs, key=lambda run: _quality(kept + run, load))
    everyone = kept + chosen
    fds, uds = _domains(everyone)
    notes = []
    if len(uds) < len(everyone):
        notes.append(f"only {len(uds)} distinct update domains for {len(everyone)} replicas")
    if len(fds) < len(everyone):
        notes.append(f"only {len(fds)} distinct fault domains for {len(everyone)} replicas")
    return Placement(vms=[v.name for v in everyone], chosen=[v.name for v in chosen],
                     fault_domains=len(fds), update_domains=len(uds),
                     spread=min(len(fds), len(uds)),
                     load={v.name: load[v.name] for v in chosen}, notes=notes)


MULTI_START = 24
"""Greedy runs from this many different first picks: one greedy pass can paint itself
into a corner (spread reached only through loaded VMs) that another start avoids."""


def _greedy(kept: list[VMView], candidates: list[VMView], needed: int, load: Counter[str],
            first: VMView | None) -> list[VMView]:
    pool = list(candidates)
    chosen: list[VMView] = []
    fds, uds = _domains(kept)
    for _ in range(needed):
        if first is not None and not chosen:
            best = first
        else:
            def score(v: VMView) -> tuple[int, int, int, str]:
                nf = len(fds | ({v.fd} if v.fd is not None else set()))
                nu = len(uds | ({v.ud} if v.ud is not None else set()))
                return (-min(nf, nu), -(nf + nu), load[v.name], v.name)

            best = min(pool, key=score)
        pool.remove(best)
        chosen.append(best)
        if best.fd is not None:
            fds.add(best.fd)
        if best.ud is not None:
            uds.add(best.ud)
    return chosen


def _quality(vms: list[VMView], load: Counter[str]) -> tuple[int, int, int, list[str]]:
    """Smaller is better: widest spread, then least load, then names (determinism)."""
    fds, uds = _domains(vms)
    return (-min(len(fds), len(uds)), -(len(fds) + len(uds)),
            sum(load[v.name] for v in vms), sorted(v.name for v in vms))


# ---------------------------------------------------------------- audit


class DomainLoss(BaseModel):
    kind: str
    """"update" (maintenance) or "fault" (hardware)."""
    domain: int
    members: list[Name]
    left: int
    """Members still available if this domain goes (not counting other outages)."""


class Move(BaseModel):
    vm: Name
    to: Name
    reason: str


class GroupAudit(BaseModel):
    group: Name
    members: list[Name]
    required: int
    live: int
    ud_safe: bool
    """Losing any one update domain keeps the group at or above min_available."""
    fd_safe: bool
    blocking: list[DomainLoss]
    """The domain losses that would take the group below min_available."""
    fix: Move | None = None
    verdict: str


def audit(vms: Mapping[str, VMView], groups: Sequence[Group]) -> list[GroupAudit]:
    """One line per group, worst first: would a rollout block (held, then forced) on it?"""
    out = [_audit_group(g, vms, groups) for g in groups]
    return sorted(out, key=lambda a: (a.ud_safe and a.fd_safe, a.group))


def _audit_group(group: Group, vms: Mapping[str, VMView], groups: Sequence[Group],
                 suggest: bool = True) -> GroupAudit:
    members = list(dict.fromkeys(group.members))
    known = [vms[m] for m in members if m in vms]
    live = [v for v in known if v.live]
    required = group.required()
    blocking: list[DomainLoss] = []
    for kind, attr in (("update", "ud"), ("fault", "fd")):
        by_domain: dict[int, list[str]] = {}
        for v in known:
            value = getattr(v, attr)
            if value is not None:
                by_domain.setdefault(value, []).append(v.name)
        for domain, names in sorted(by_domain.items()):
            left = len(live) - sum(1 for v in live if v.name in names)
            if left < required:
                blocking.append(DomainLoss(kind=kind, domain=domain, members=sorted(names),
                                           left=left))
    ud_safe = not any(b.kind == "update" for b in blocking)
    fd_safe = not any(b.kind == "fault" for b in blocking)
    fix = _fix(group, members, blocking, vms, groups) if blocking and suggest else None
    if ud_safe and fd_safe:
        verdict = "safe: any one update or fault domain can go"
    else:
        worst = blocking[0]
        verdict = (f"{'blocks a rollout' if not ud_safe else 'loses quorum with a rack'}: "
                   f"losing {worst.kind} domain {worst.domain} ({', '.join(worst.members)}) "
                   f"leaves {worst.left} of {len(members)}, min {required}")
        missing = [m for m in members if m not in vms]
        if missing:
            verdict += f"; unknown members count as down: {', '.join(missing)}"
    return GroupAudit(group=group.name, members=members, required=required, live=len(live),
                      ud_safe=ud_safe, fd_safe=fd_safe, blocking=blocking, fix=fix,
                      verdict=verdict)


def _fix(group: Group, members: list[str], blocking: list[DomainLoss],
         vms: Mapping[str, VMView], groups: Sequence[Group]) -> Move | None:
    """One move that makes the group safe: the member in the most blocking domains goes
    to the VM that spreads the rest best. None when no single move is enough."""
    crowded = Counter(m for loss in blocking for m in loss.members)
    for leaving, _ in sorted(crowded.items(), key=lambda item: (-item[1], item[0])):
        staying = [m for m in members if m != leaving and m in vms]
        try:
            target = place(PlacementRequest(replicas=len(staying) + 1, group=group.name,
                                            holding=staying, exclude=[leaving]), vms, groups)
        except PlacementError:
            continue
        moved = Group(name=group.name, members=target.vms,
                      min_available=group.min_available)
        if _audit_group(moved, vms, groups, suggest=False).blocking:
            continue
        to = target.chosen[0]
        shared = [f"{loss.kind} domain {loss.domain}" for loss in blocking
                  if leaving in loss.members]
        return Move(vm=leaving, to=to, reason=(
            f"{leaving} shares {' and '.join(shared)} with other members; {to} is in "
            f"FD {vms[to].fd}, UD {vms[to].ud}"))
    return None
