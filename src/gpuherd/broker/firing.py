"""Cron firing: queue the scheduled jobs that are due, once each, in one journal transaction."""

from __future__ import annotations

import time

from gpuherd.broker.cron import Missed, Schedule, due
from gpuherd.broker.journal import Journal
from gpuherd.broker.submission import Submission
from gpuherd.spec.model import Config


def fire_schedules(config: Config, journal: Journal, *, now: float, up_since: float) -> bool:
    """Returns whether it queued a run."""
    schedules = [
        Schedule(name, job.schedule, job.catch_up)
        for name, job in config.jobs.items()
        if job.schedule
    ]
    if not schedules:
        return False
    marks = journal.schedule_marks()
    outcomes, new_marks = due(schedules, marks, now=now, up_since=up_since, tz=config.timezone)
    if new_marks == marks:
        return False
    active = {row.name for row in journal.jobs() if row.submission.adhoc is None}
    runs = []
    for out in outcomes:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(out.due))
        if isinstance(out, Missed):
            journal.record("schedule_missed", f"{out.job} at {when}: {out.reason}")
        elif out.job in active:  # never two runs of one scheduled job at once
            journal.record(
                "schedule_skipped", f"{out.job} at {when}: the previous run is still active"
            )
        else:
            how = "caught up after a broker restart" if out.caught_up else "on schedule"
            submission = Submission(job=out.job, scheduled_for=out.due)  # type: ignore[arg-type]
            runs.append((submission, f"{out.job} at {when}, {how}"))
    journal.fire_schedules(new_marks, runs)
    return bool(runs)
