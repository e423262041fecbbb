"""How a job ends, whatever ends it: its tenants come back first, then it is judged and its
result recorded. One path for a normal exit, a stop, a cancel, an abort and a requeue."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpuherd.broker import results
from gpuherd.broker.checks import success
from gpuherd.broker.clock import Clock
from gpuherd.broker.faults import crash_point
from gpuherd.broker.following import Followed
from gpuherd.broker.journal import Journal
from gpuherd.broker.keeper import Keeper
from gpuherd.broker.launcher import Exited
from gpuherd.broker.states import JobState
from gpuherd.ids import JobId


@dataclass
class Ender:
    journal: Journal
    keeper: Keeper
    state_dir: Path
    clock: Clock

    def finish(self, f: Followed, exited: Exited) -> None:
        """The job's process ended (or was stopped): restore, judge, record."""
        job_id = f.row.id
        crash_point("after_exit")
        self.journal.set_job_state(job_id, JobState.RESTORING, exit_code=exited.code)
        self.keeper.restore_job(job_id)  # as soon as the job ends, whatever its outcome
        started = f.row.started_at or self.clock.now()
        checks = success(
            f.job,
            exit_code=exited.code,
            workdir=f.workdir,
            gpu_after=None if f.gpu_seen_at is None else f.gpu_seen_at - started,
            gpu_watched=f.watched,
            clock=self.clock,
        )
        stopped_for = f.stopped_for or exited.reason  # the broker's reason, else its runner's
        reasons = [stopped_for] if stopped_for else []
        reasons += [f"{c.check}: {c.detail}" for c in checks if not c.ok]
        cancelled = f.stopped_for == "cancelled"
        outcome = (
            JobState.CANCELLED if cancelled else JobState.FAILED if reasons else JobState.SUCCEEDED
        )
        extra = {
            "exit_code": exited.code,
            "stopped_for": stopped_for,
            "peak_vram_bytes": f.peak_vram,
            "checks": [{"check": c.check, "ok": c.ok, "detail": c.detail} for c in checks],
        }
        self.end(job_id, outcome, "cancelled" if cancelled else "; ".join(reasons) or None, extra)

    def abort(self, job_id: JobId, outcome: JobState, reason: str) -> None:
        """The job ends before it ran to its end: tenants back first, then the record."""
        row = self.journal.job(job_id)
        if row is None or row.state.final:
            return
        if row.state is not JobState.QUEUED:
            self.journal.set_job_state(job_id, JobState.RESTORING, reason=reason)
            self.keeper.restore_job(job_id)
        self.end(job_id, outcome, reason, {})

    def requeue(self, job_id: JobId, reason: str) -> None:
        """It never started: give its tenants back and queue it again."""
        self.journal.set_job_state(job_id, JobState.RESTORING, reason=reason)
        self.keeper.restore_job(job_id)
        self.journal.set_job_state(job_id, JobState.QUEUED, reason=reason)

    def end(
        self, job_id: JobId, outcome: JobState, reason: str | None, extra: dict[str, Any]
    ) -> None:
        self.journal.set_job_state(job_id, outcome, reason=reason)
        row = self.journal.job(job_id)
        assert row is not None
        record = results.record(row, self.journal.releases(job_id=job_id), extra)
        self.journal.set_result(job_id, record)
        results.write(self.state_dir, record)
