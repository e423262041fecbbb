"""What each GPU's headroom guard would do over the planned week, from the activity windows.

The model: a tenant is a long-running service, resident all week at its `typical` VRAM and
holding its `peak` while active (in one of its windows; always, without windows). It is idle
outside its windows, so only then may the guard release it. A scheduled job holds its `vram`
for its whole timeout and is never released. At every window edge the guard's own decision
(`guard.decide`) runs with the pressure taken as lasting (`for` is seconds, windows minutes) and
a restore allowed when the room lasts `restore_after` until the next edge. Pure: no clock.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field, replace
from typing import Any

from gpuherd.broker.guard import (
    GuardGpu,
    GuardTenant,
    Release,
    Released,
    Restore,
    decide,
    required_free,
)
from gpuherd.broker.scheduler import TenantState
from gpuherd.ids import GpuName, TenantName
from gpuherd.plan.demand import Week, cached_windows
from gpuherd.plan.report import when
from gpuherd.spec.model import Config, GpuSpec, GuardSpec

_PAST = -1e18  # a timer started before the week: it has run long enough


@dataclass(frozen=True, slots=True)
class _Resident:
    name: TenantName
    priority: int
    preemptible: bool
    cooldown: float
    typical: int
    peak: int
    headroom: int
    spans: tuple[tuple[int, int], ...]  # minutes it is active

    def active(self, minute: int) -> bool:
        return any(s <= minute < e for s, e in self.spans)


@dataclass
class GuardWeek:
    gpu: str
    # tenant -> (start, end) minutes it is released by the guard
    released: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    short: list[tuple[int, int]] = field(default_factory=list)  # no room, nothing to release

    def count(self, tenant: str) -> int:
        return len(self.released.get(tenant, []))


def guard_week(config: Config, week: Week) -> list[GuardWeek]:
    """One result per GPU with a `guard` and a known `memory`."""
    return [
        _simulate(config, gpu, gpu.guard, week)
        for gpu in config.gpus or []
        if gpu.guard is not None and gpu.memory is not None
    ]


def _residents(config: Config, gpu: GpuSpec, week: Week) -> list[_Resident]:
    out = []
    for name, t in config.tenants.items():
        if t.gpu != gpu.name:
            continue
        typical = t.vram.typical.resolve(gpu.memory) or 0
        schedule = None if t.active is None else tuple((w.cron, w.for_) for w in t.active)
        out.append(
            _Resident(
                name=TenantName(name),
                priority=t.priority,
                preemptible=t.preemptible and bool(t.preempt),
                cooldown=t.cooldown,
                typical=typical,
                peak=t.vram.peak_amount.resolve(gpu.memory) or typical,
                headroom=t.headroom,
                spans=cached_windows(week, schedule),
            )
        )
    return out


def _jobs(config: Config, gpu: GpuSpec, week: Week) -> list[tuple[int, int, int]]:
    runs = []
    for job in config.jobs.values():
        if job.gpu == gpu.name and job.schedule is not None:
            need = job.vram.resolve(gpu.memory) or 0
            for s, e in cached_windows(week, ((job.schedule, job.timeout),)):
                runs.append((s, e, need))
    return runs


def _edges(residents: list[_Resident], jobs: list[tuple[int, int, int]], week: Week) -> list[int]:
    edges = {0, week.minutes}
    for r in residents:
        for s, e in r.spans:
            edges.update((s, e))
    for s, e, _ in jobs:
        edges.update((s, e))
    return sorted(t for t in edges if 0 <= t <= week.minutes)


@dataclass
class _Sim:
    gpu: GpuSpec
    spec: GuardSpec
    residents: list[_Resident]
    result: GuardWeek
    down: dict[TenantName, int] = field(default_factory=dict)  # released -> since (minute)

    def settle(self, minute: int, following: int, job_load: int) -> list[int]:
        """Decide until nothing more happens at `minute`; returns when cooldowns end."""
        capacity = (self.gpu.memory or 0) - self.gpu.reserve
        lasting = (following - minute) * 60 >= self.spec.restore_after
        by_name = {r.name: r for r in self.residents}
        wake: list[int] = []
        for _ in range(2 * len(self.residents) + 1):
            tenants = [
                _tenant(r, self.gpu.name, minute, r.name in self.down) for r in self.residents
            ]
            used = job_load + sum(t.state.held for t in tenants)
            room = GuardGpu(
                name=self.gpu.name,
                free=capacity - used,
                promised=0,
                spec=self.spec,
                low_since=_PAST,
            )
            released = [
                Released(
                    name=n,
                    priority=by_name[n].priority,
                    size=by_name[n].typical,
                    released_at=at * 60.0,
                    cooldown=by_name[n].cooldown,
                )
                for n, at in self.down.items()
            ]
            out = decide(room, tenants, released, minute * 60.0)
            if out.room_for is not None and lasting:  # the room lasts `restore_after`
                room = replace(room, room_since=_PAST, room_for=out.room_for)
                out = decide(room, tenants, released, minute * 60.0)
            match out.action:
                case Release(victims=victims):
                    for v in victims:
                        self.down[v] = minute
                        wake.append(minute + math.ceil(by_name[v].cooldown / 60))
                case Restore(tenant=tenant):
                    since = self.down.pop(tenant)
                    self.result.released.setdefault(tenant, []).append((since, minute))
                case None:
                    if capacity - used < required_free(self.spec, tenants):
                        _add_short(self.result, minute, following)
                    break
        return wake


def _simulate(config: Config, gpu: GpuSpec, spec: GuardSpec, week: Week) -> GuardWeek:
    residents = _residents(config, gpu, week)
    jobs = _jobs(config, gpu, week)
    heap = _edges(residents, jobs, week)
    heapq.heapify(heap)
    sim = _Sim(gpu, spec, residents, GuardWeek(gpu.name))
    seen: set[int] = set()
    while heap:
        minute = heapq.heappop(heap)
        if minute in seen or minute >= week.minutes:
            continue
        seen.add(minute)
        following = min((t for t in heap if t > minute), default=week.minutes)
        job_load = sum(n for s, e, n in jobs if s <= minute < e)
        for t in sim.settle(minute, following, job_load):
            heapq.heappush(heap, t)
    for name, start in sim.down.items():
        sim.result.released.setdefault(name, []).append((start, week.minutes))
    return sim.result


def _add_short(result: GuardWeek, start: int, end: int) -> None:
    if result.short and result.short[-1][1] == start:
        result.short[-1] = (result.short[-1][0], end)
    else:
        result.short.append((start, end))


def _tenant(r: _Resident, gpu: GpuName, minute: int, released: bool) -> GuardTenant:
    active = r.active(minute) and not released
    held = 0 if released else (r.peak if active else r.typical)
    state = TenantState(
        name=r.name,
        gpu=gpu,
        priority=r.priority,
        preemptible=r.preemptible,
        held=held,
        state="released" if released else "running",
    )
    return GuardTenant(state=state, idle=not r.active(minute), headroom=r.headroom)


def guard_week_dict(result: GuardWeek, week: Week) -> dict[str, Any]:
    """JSON for `gpuherd plan`: per tenant how often and when the guard releases it."""
    return {
        "gpu": result.gpu,
        "releases": [
            {
                "tenant": name,
                "times_per_week": len(spans),
                "minutes_per_week": sum(e - s for s, e in spans),
                "when": [when(week, s, e) for s, e in spans],
            }
            for name, spans in sorted(result.released.items())
        ],
        "short": [when(week, s, e) for s, e in result.short],
    }
