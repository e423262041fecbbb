"""Who holds how much VRAM when, over one week: activity intervals per tenant and job.

Times are minutes of real elapsed time from the week's start (Monday 00:00 in the configured
time zone), so a week with a DST change has 10,020 or 10,140 minutes, and cron firings are
evaluated in local time by croniter, as a cron daemon in that zone would fire them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

from croniter import croniter

from gpuherd.spec.model import Config, GpuSpec

Kind = Literal["tenant", "job"]


@dataclass(frozen=True, slots=True)
class Member:
    """A tenant or job as the planner sees it: bytes it typically and at most holds."""

    name: str
    kind: Kind
    typical: int
    peak: int
    priority: int
    preemptible: bool
    max_downtime: float | None = None  # seconds
    timeout: float | None = None  # seconds, jobs only


@dataclass(frozen=True, slots=True)
class Interval:
    start: int  # minutes from the week's start
    end: int
    member: Member


@dataclass(frozen=True, slots=True)
class Week:
    start: datetime
    end: datetime
    tz: tzinfo

    # Arithmetic goes through UTC: Python subtracts (and adds to) aware datetimes that share a
    # tzinfo by wall-clock time, which would make every week 10,080 minutes long.
    @property
    def minutes(self) -> int:
        return self.offset(self.end)

    def offset(self, moment: datetime) -> int:
        """Real minutes from the week's start to `moment`."""
        return int((moment.astimezone(UTC) - self.start.astimezone(UTC)).total_seconds() // 60)

    def at(self, minute: int) -> datetime:
        """Local wall time `minute` real minutes after the week's start."""
        return (self.start.astimezone(UTC) + timedelta(minutes=minute)).astimezone(self.tz)


def make_week(config: Config, week_start: date | None = None) -> Week:
    tz: tzinfo = ZoneInfo(config.timezone) if config.timezone else _local_tz()
    day = week_start or _next_monday(datetime.now(tz).date())
    start = datetime(day.year, day.month, day.day, tzinfo=tz)
    end_day = day + timedelta(days=7)
    return Week(start, datetime(end_day.year, end_day.month, end_day.day, tzinfo=tz), tz)


def _local_tz() -> tzinfo:
    local = datetime.now().astimezone().tzinfo
    assert local is not None
    return local


def _next_monday(today: date) -> date:
    return today + timedelta(days=(7 - today.weekday()) % 7)


def _firings(cron: str, week: Week, lookback: timedelta) -> list[datetime]:
    it = croniter(cron, week.start - lookback - timedelta(seconds=1))
    found: list[datetime] = []
    while True:
        fire: datetime = it.get_next(datetime)
        if fire >= week.end:
            return found
        found.append(fire)


def windows(week: Week, schedule: list[tuple[str, float]] | None) -> list[tuple[int, int]]:
    """Minute intervals covered by (cron, duration seconds) windows; None means always."""
    if schedule is None:
        return [(0, week.minutes)]
    spans: list[tuple[int, int]] = []
    for cron, seconds in schedule:
        for fire in _firings(cron, week, timedelta(seconds=seconds)):
            start = week.offset(fire)
            end = start + max(1, round(seconds / 60))
            if end > 0 and start < week.minutes:
                spans.append((max(start, 0), min(end, week.minutes)))
    spans.sort()
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


@lru_cache(maxsize=4096)
def cached_windows(
    week: Week, schedule: tuple[tuple[str, float], ...] | None
) -> tuple[tuple[int, int], ...]:
    """Many tenants share a schedule: croniter is evaluated once per (week, schedule)."""
    return tuple(windows(week, None if schedule is None else list(schedule)))


def by_gpu(config: Config, assigned: dict[str, str] | None = None) -> dict[str, list[str]]:
    """GPU name -> names of the tenants and jobs on it (pinned, or `assigned` by placement)."""
    placed = assigned or {}
    groups: dict[str, list[str]] = {}
    for name, tenant in config.tenants.items():
        gpu = tenant.gpu or placed.get(name)
        if gpu is not None:
            groups.setdefault(gpu, []).append(name)
    for job_name, job in config.jobs.items():
        gpu = job.gpu or placed.get(job_name)
        if gpu is not None:
            groups.setdefault(gpu, []).append(job_name)
    return groups


def members_on(
    config: Config, gpu: GpuSpec, week: Week, names: list[str] | None = None
) -> list[Interval]:
    """Activity intervals of the tenants and jobs on `gpu` (`names`; default: those pinned)."""
    total = gpu.memory
    on_gpu = names if names is not None else by_gpu(config).get(gpu.name, [])
    intervals: list[Interval] = []
    for name in on_gpu:
        tenant = config.tenants.get(name)  # type: ignore[call-overload]
        if tenant is not None:
            typical = tenant.vram.typical.resolve(total) or 0
            peak = tenant.vram.peak_amount.resolve(total) or typical
            member = Member(
                name,
                "tenant",
                typical,
                peak,
                tenant.priority,
                tenant.preemptible,
                max_downtime=tenant.max_downtime,
            )
            schedule = (
                None if tenant.active is None else tuple((w.cron, w.for_) for w in tenant.active)
            )
            intervals += [Interval(s, e, member) for s, e in cached_windows(week, schedule)]
            continue
        job = config.jobs[name]  # type: ignore[index]
        if job.schedule is None:
            continue
        need = job.vram.resolve(total) or 0
        run = Member(name, "job", need, need, job.priority, False, timeout=job.timeout)
        # Worst case: every run lasts its full timeout.
        runs = cached_windows(week, ((job.schedule, job.timeout),))
        intervals += [Interval(s, e, run) for s, e in runs]
    return intervals
