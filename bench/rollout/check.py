"""Quorum violations from ground truth (the recorder's spans), not from anyone's records.

A member of a group is *out* while any of its spans is open: drained (from the drain
hook's start until its restore hook finished) or down (rebooting). Each time a member
goes out while it was in, the group's availability drops; if it drops below
`min_available`, that is an incident, blamed on whoever caused the outage that started
then: **ours** (a drain we asked for while the event was deemed safe, or a reboot started
by an acknowledgement) — a quorum violation — or the **platform's** (a NotBefore start,
or the best-effort drain just before it).
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.rollout.model import GroupSpec
from bench.rollout.platform import Span


@dataclass(frozen=True)
class Incident:
    group: str
    at: float
    eid: str
    ours: bool
    available: int
    required: int


def merged(spans: list[Span]) -> list[tuple[float, float, bool, str]]:
    """Out-of-service intervals; each keeps the cause of the span that opened it."""
    out: list[tuple[float, float, bool, str]] = []
    for span in sorted(spans, key=lambda s: (s.begin, not s.ours)):
        if span.end <= span.begin:
            continue
        if out and span.begin <= out[-1][1]:
            begin, end, ours, eid = out[-1]
            out[-1] = (begin, max(end, span.end), ours, eid)
        else:
            out.append((span.begin, span.end, span.ours, span.eid))
    return out


def incidents(groups: list[GroupSpec], spans: dict[str, list[Span]]) -> list[Incident]:
    found: list[Incident] = []
    for group in groups:
        changes: list[tuple[float, int, bool, str]] = []
        for member in group.members:
            for begin, end, ours, eid in merged(spans.get(member, [])):
                changes.append((begin, 1, ours, eid))  # out
                changes.append((end, 0, ours, eid))    # back (sorts first at a tie)
        available = len(group.members)
        seen: set[tuple[str, bool]] = set()
        for at, kind, ours, eid in sorted(changes):
            if kind == 0:
                available += 1
                continue
            available -= 1
            if available < group.min_available and (eid, ours) not in seen:
                seen.add((eid, ours))
                found.append(Incident(group.name, at, eid, ours, available, group.min_available))
    return found
