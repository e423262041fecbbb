"""When scheduled jobs fire: a pure function of the schedules, what fired last, and the clock.

A fire time that passed while the broker was up fires, however late the loop got to it (a long
restore can hold a step). One that passed while the broker was down fires once on start if it
is at most `catch_up` old, else it is reported as missed: a nightly render must not
start at noon because the host rebooted at 3 AM, unless the operator allowed that. Several
missed fire times of one job collapse into one run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from croniter import croniter


@dataclass(frozen=True, slots=True)
class Schedule:
    job: str
    cron: str
    catch_up: float | None  # seconds; None: missed runs are not caught up


@dataclass(frozen=True, slots=True)
class Fire:
    job: str
    due: float
    caught_up: bool  # missed while the broker was down, run now within catch_up


@dataclass(frozen=True, slots=True)
class Missed:
    job: str
    due: float
    reason: str


def latest_due(cron: str, now: float, tz: str | None) -> float:
    """The most recent fire time at or before `now` (unix seconds), in the zone's wall time."""
    zone = ZoneInfo(tz) if tz else None
    # get_prev is strictly before its start; fire times are whole minutes, so start a second on.
    start = now + 1
    base = (
        datetime.fromtimestamp(start, zone) if zone else datetime.fromtimestamp(start).astimezone()
    )
    return float(croniter(cron, base).get_prev(float))


def due(
    schedules: list[Schedule],
    last: dict[str, float],
    *,
    now: float,
    up_since: float,
    tz: str | None = None,
) -> tuple[list[Fire | Missed], dict[str, float]]:
    """What fires now, and the new `last` (fire time handled per job).

    A job not in `last` was never seen: its current fire time is only recorded, so adding a
    schedule (or a fresh state dir) never fires a run for a time already past.
    """
    out: list[Fire | Missed] = []
    new_last = dict(last)
    for s in schedules:
        when = latest_due(s.cron, now, tz)
        seen = last.get(s.job)
        new_last[s.job] = when
        if seen is None or when <= seen:
            continue
        if when >= up_since:
            out.append(Fire(s.job, when, caught_up=False))
        elif s.catch_up is not None and now - when <= s.catch_up:
            out.append(Fire(s.job, when, caught_up=True))
        else:
            window = "no catch_up set" if s.catch_up is None else f"catch_up is {s.catch_up:g}s"
            late = f"{now - when:.0f}s late"
            out.append(Missed(s.job, when, f"missed while the broker was down ({window}, {late})"))
    return out, new_last
