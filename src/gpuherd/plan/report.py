"""The plan for every GPU: capacity, peaks and when, verdict, preemptions, and findings."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from datetime import date
from functools import cached_property
from typing import Any

from gpuherd.plan.demand import Interval, Week, by_gpu, make_week, members_on, windows
from gpuherd.plan.placement import SLOT, Placement, place, slot_loads
from gpuherd.plan.sweep import Preemption, Segment, Verdict, sweep, verdict
from gpuherd.spec.model import Config, GpuSpec
from gpuherd.units import format_bytes, format_duration

SCHEMA_VERSION = 1
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True, slots=True)
class Finding:
    id: str
    severity: str
    message: str
    subject: str


@dataclass
class GpuPlan:
    gpu: GpuSpec
    capacity: int
    segments: list[Segment]
    verdict: Verdict
    preemptions: list[Preemption]
    week: Week

    @cached_property
    def peak(self) -> int:
        return max((s.peak for s in self.segments), default=0)

    @cached_property
    def typical_peak(self) -> int:
        return max((s.typical for s in self.segments), default=0)

    def peak_segments(self) -> list[Segment]:
        peak = self.peak
        return [s for s in self.segments if s.members and s.peak == peak]


@dataclass
class Plan:
    week: Week
    gpus: list[GpuPlan] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    placements: list[Placement] = field(default_factory=list)


def when(week: Week, start: int, end: int) -> dict[str, Any]:
    first, last = week.at(start), week.at(end)
    return {
        "start": f"{_DAYS[first.weekday()]} {first:%H:%M}",
        "end": f"{_DAYS[last.weekday()]} {last:%H:%M}",
        "weekday": _DAYS[first.weekday()],
        "start_minute_of_week": first.weekday() * 1440 + first.hour * 60 + first.minute,
        "end_minute_of_week": last.weekday() * 1440 + last.hour * 60 + last.minute,
    }


def _plan_gpu(config: Config, gpu: GpuSpec, week: Week, names: list[str]) -> GpuPlan | None:
    if gpu.memory is None or gpu.capacity is None:
        return None
    segments = sweep(members_on(config, gpu, week, names), week.minutes)
    result, preemptions = verdict(segments, gpu.capacity)
    return GpuPlan(gpu, gpu.capacity, segments, result, preemptions, week)


def _placements(config: Config, week: Week) -> list[Placement]:
    slots = -(-week.minutes // SLOT)
    loads: dict[str, list[int]] = {}
    pinned_by_gpu = by_gpu(config)
    for gpu in config.gpus or []:
        if gpu.name not in pinned_by_gpu:
            continue  # nothing pinned: an empty load
        pinned = _plan_gpu(config, gpu, week, pinned_by_gpu[gpu.name])
        if pinned is not None:
            loads[gpu.name] = slot_loads([(s.start, s.end, s.peak) for s in pinned.segments], slots)
    return place(config, week, loads)


def make_plan(config: Config, *, week_start: date | None = None) -> Plan:
    week = make_week(config, week_start)
    plan = Plan(week)
    plan.placements = _placements(config, week)
    assigned = {p.subject: p.gpu for p in plan.placements if p.gpu is not None}
    groups = by_gpu(config, assigned)
    for gpu in config.gpus or []:
        planned = _plan_gpu(config, gpu, week, groups.get(gpu.name, []))
        if planned is None:
            plan.findings.append(
                Finding(
                    "memory-unknown",
                    "error",
                    f"{gpu.name} has no `memory`: "
                    "it cannot be planned without a GPU to read it from",
                    gpu.name,
                )
            )
            continue
        plan.gpus.append(planned)
        plan.findings += _findings(config, planned, groups.get(gpu.name, []))
    for kind, items in (("tenant", config.tenants), ("job", config.jobs)):
        for name, spec in items.items():
            if spec.gpu is None and name not in assigned:
                reason = next((p.reason for p in plan.placements if p.subject == name), "")
                plan.findings.append(Finding("unplaced", "error", f"{kind} {name}: {reason}", name))
            if spec.shares > 1:
                plan.findings.append(
                    Finding(
                        "shares",
                        "warning",
                        f"{kind} {name} asks for {spec.shares} time-slice shares: "
                        "time-slicing gives every process an equal share, so extra shares buy no "
                        "compute; ask for 1",
                        name,
                    )
                )
    return plan


def _findings(config: Config, plan: GpuPlan, names: list[str]) -> list[Finding]:
    found: list[Finding] = []
    found += _vllm_utilization(config, plan, names)
    found += _downtime(config, plan)
    found += _checkpoint_restores(config, plan)
    found += _schedule_shifts(config, plan, names)
    return found


def _checkpoint_restores(config: Config, plan: GpuPlan) -> list[Finding]:
    """A tenant released by `checkpoint` waits in host RAM: how long putting it back takes, at a
    conservative 5 GB/s + 1 s (4.6-8.1 GB/s have been published for one GPU)."""
    from gpuherd.checkpoint import restore_seconds

    found = []
    seen: set[str] = set()
    for pre in plan.preemptions:
        for victim in pre.victims:
            tenant = config.tenants.get(victim)  # type: ignore[call-overload]
            if tenant is None or victim in seen or not tenant.preempt:
                continue
            if tenant.preempt[0].kind != "checkpoint":
                continue
            seen.add(victim)
            held = tenant.vram.peak_amount.resolve(plan.gpu.memory) or 0
            found.append(
                Finding(
                    "checkpoint-restore",
                    "info",
                    f"{victim} is moved to host RAM for {pre.job}: {format_bytes(held)} of host "
                    f"RAM while it waits, about {restore_seconds(held):.0f}s to put back",
                    victim,
                )
            )
    return found


def _vllm_utilization(config: Config, plan: GpuPlan, names: list[str]) -> list[Finding]:
    memory = plan.gpu.memory or 0
    found = []
    for name in names:
        tenant = config.tenants.get(name)  # type: ignore[call-overload]
        if tenant is None or not _is_vllm(tenant):
            continue
        neighbours = max(
            (
                sum(m.peak for m in s.members if m.name != name)
                for s in plan.segments
                if any(m.name == name for m in s.members)
            ),
            default=0,
        )
        safe = math.floor((plan.capacity - neighbours) / memory * 100) / 100 if memory else 0.0
        current = tenant.vram.peak_amount.fraction
        now = f" (now {current:g})" if current is not None else ""
        found.append(
            Finding(
                "vllm-utilization",
                "warning" if current is not None and current > safe else "info",
                f"{name}: largest safe --gpu-memory-utilization is {max(safe, 0):.2f}{now}: its "
                f"neighbours peak at {format_bytes(neighbours)} while it runs, capacity "
                f"{format_bytes(plan.capacity)}",
                name,
            )
        )
    return found


def _is_vllm(tenant: Any) -> bool:
    return bool(tenant.app == "vllm" or any(m.kind == "vllm-sleep" for m in tenant.preempt))


def _downtime(config: Config, plan: GpuPlan) -> list[Finding]:
    found = []
    for pre in plan.preemptions:
        job = config.jobs.get(pre.job)  # type: ignore[call-overload]
        for victim in pre.victims:
            tenant = config.tenants.get(victim)  # type: ignore[call-overload]
            if job is None or tenant is None or tenant.max_downtime is None:
                continue
            if tenant.max_downtime < job.timeout:
                found.append(
                    Finding(
                        "max-downtime",
                        "warning",
                        f"{pre.job} must release {victim} (max_downtime "
                        f"{format_duration(tenant.max_downtime)}) for up to its timeout "
                        f"{format_duration(job.timeout)}: the broker will refuse to preempt it",
                        victim,
                    )
                )
    return found


_DAILY = re.compile(r"^(\d+) (\d+) (.+)$")


def _schedule_shifts(config: Config, plan: GpuPlan, names: list[str]) -> list[Finding]:
    """For a job whose runs push the GPU over capacity, the hour that lowers the peak most."""
    found = []
    for name in names:
        job = config.jobs.get(name)  # type: ignore[call-overload]
        if job is None or job.schedule is None:
            continue
        match = _DAILY.match(job.schedule)
        if match is None:
            continue
        minute, hour, rest = match.groups()
        current = _peak_with_job_at(config, plan, name, job.schedule)
        if current <= plan.capacity:
            continue
        best = min(
            ((_peak_with_job_at(config, plan, name, f"{minute} {h} {rest}"), h) for h in range(24)),
            key=lambda item: (item[0], abs(item[1] - int(hour))),
        )
        if best[0] < current:
            found.append(
                Finding(
                    "schedule-shift",
                    "info",
                    f"move {name} from {int(hour):02d}:{int(minute):02d} to {best[1]:02d}:"
                    f"{int(minute):02d}: the peak while it runs drops from "
                    f"{format_bytes(current)} to {format_bytes(best[0])} "
                    f"(capacity {format_bytes(plan.capacity)})",
                    name,
                )
            )
    return found


def _peak_with_job_at(config: Config, plan: GpuPlan, job: str, schedule: str) -> int:
    intervals: list[Interval] = []
    for seg in plan.segments:
        for member in seg.members:
            if member.name != job:
                intervals.append(Interval(seg.start, seg.end, member))
    spec = config.jobs[job]  # type: ignore[index]
    member = next(m for s in plan.segments for m in s.members if m.name == job)
    for start, end in windows(plan.week, [(schedule, spec.timeout)]):
        intervals.append(Interval(start, end, replace(member)))
    segments = sweep(intervals, plan.week.minutes)
    return max((s.peak for s in segments if any(m.name == job for m in s.members)), default=0)


def plan_dict(plan: Plan) -> dict[str, Any]:
    return {
        "version": SCHEMA_VERSION,
        "timezone": str(plan.week.tz),
        "week_start": plan.week.start.date().isoformat(),
        "gpus": [
            {
                "name": g.gpu.name,
                "node": g.gpu.node,
                "capacity_bytes": g.capacity,
                "peak_bytes": g.peak,
                "typical_peak_bytes": g.typical_peak,
                "verdict": g.verdict,
                "peaks": [
                    {
                        **when(plan.week, s.start, s.end),
                        "bytes": s.peak,
                        "members": [m.name for m in s.members],
                    }
                    for s in g.peak_segments()
                ],
                "preemptions": [
                    {"job": p.job, "release": list(p.victims), "minutes_per_week": p.minutes}
                    for p in g.preemptions
                ],
                "placements": [
                    {"subject": p.subject, "kind": p.kind, "reason": p.reason}
                    for p in plan.placements
                    if p.gpu == g.gpu.name
                ],
            }
            for g in plan.gpus
        ],
        "findings": [
            {"id": f.id, "severity": f.severity, "message": f.message, "subject": f.subject}
            for f in plan.findings
        ],
        "emitted": [],
    }
