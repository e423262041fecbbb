"""Event sweep over activity intervals: segments of constant membership, and the verdict."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

from gpuherd.plan.demand import Interval, Member

Verdict = Literal["fits", "fits-typical", "needs-preemption", "over"]


@dataclass(frozen=True, slots=True)
class Segment:
    start: int
    end: int
    members: tuple[Member, ...]

    @property
    def peak(self) -> int:
        return sum(m.peak for m in self.members)

    @property
    def typical(self) -> int:
        return sum(m.typical for m in self.members)


def sweep(intervals: list[Interval], minutes: int) -> list[Segment]:
    """Maximal spans in which the same members are active (gaps included, with no members)."""
    events: dict[int, list[tuple[int, Member]]] = {0: [], minutes: []}
    for iv in intervals:
        events.setdefault(iv.start, []).append((1, iv.member))
        events.setdefault(iv.end, []).append((-1, iv.member))
    active: dict[Member, int] = {}
    segments: list[Segment] = []
    times = sorted(events)
    for t, nxt in itertools.pairwise(times):
        for delta, member in events[t]:
            active[member] = active.get(member, 0) + delta
            if active[member] == 0:
                del active[member]
        members = tuple(sorted(active, key=lambda m: (m.kind, m.name)))
        if segments and segments[-1].members == members and segments[-1].end == t:
            segments[-1] = Segment(segments[-1].start, nxt, members)
        else:
            segments.append(Segment(t, nxt, members))
    return segments


@dataclass(frozen=True, slots=True)
class Preemption:
    """Over-capacity time that a job causes, fixed by releasing these tenants."""

    job: str
    victims: tuple[str, ...]
    minutes: int


def preemption_for(segment: Segment, capacity: int) -> tuple[str, tuple[str, ...]] | None:
    """(job, victims) that bring an over-capacity segment under capacity, if a job is there and
    its lower-priority preemptible tenants free enough; None when nothing fixes it."""
    jobs = [m for m in segment.members if m.kind == "job"]
    if not jobs:
        return None
    top = max(jobs, key=lambda m: m.priority)
    candidates = sorted(
        (
            m
            for m in segment.members
            if m.kind == "tenant" and m.preemptible and m.priority < top.priority
        ),
        key=lambda m: (m.priority, -m.peak),
    )
    excess = segment.peak - capacity
    victims: list[str] = []
    for tenant in candidates:
        if excess <= 0:
            break
        victims.append(tenant.name)
        excess -= tenant.peak
    return (top.name, tuple(victims)) if excess <= 0 else None


def verdict(segments: list[Segment], capacity: int) -> tuple[Verdict, list[Preemption]]:
    over = [s for s in segments if s.peak > capacity]
    if not over:
        return "fits", []
    fixes: dict[tuple[str, tuple[str, ...]], int] = {}
    fixable = True
    for seg in over:
        fix = preemption_for(seg, capacity)
        if fix is None:
            fixable = False
            break
        fixes[fix] = fixes.get(fix, 0) + seg.end - seg.start
    if fixable:
        return "needs-preemption", [Preemption(j, v, m) for (j, v), m in fixes.items()]
    if all(s.typical <= capacity for s in segments):
        return "fits-typical", []
    return "over", []
