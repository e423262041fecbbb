"""The broker as its callers see it: submit, cancel, and read views. No engine lock anywhere:
a submission is validated against the config and written to the journal (its own lock, one
short transaction) while a step may be releasing a tenant for minutes."""

from __future__ import annotations

from pathlib import Path

from gpuherd.broker.clock import SYSTEM, Clock, wait_until
from gpuherd.broker.daemon import Daemon
from gpuherd.broker.errors import AdhocDisabled, SubmissionError, UnknownJob
from gpuherd.broker.intake import Intake
from gpuherd.broker.states import JobState
from gpuherd.broker.submission import Submission
from gpuherd.broker.views import Views
from gpuherd.ids import JobId


class Broker:
    def __init__(self, daemon: Daemon, *, clock: Clock = SYSTEM) -> None:
        self.daemon = daemon
        self.engine = daemon.engine
        self.config = daemon.engine.config
        self.state_dir = daemon.engine.state_dir
        self._clock = clock
        self.views = Views(
            config=self.config,
            journal=self.engine.journal,
            published=lambda: self.engine.published,
            health=lambda: daemon.health,
        )
        self.intake = Intake(self.engine.journal, daemon.wake)

    def check(self, submission: Submission) -> None:
        """Raise UnknownJob, AdhocDisabled or SubmissionError unless it can be queued."""
        if submission.adhoc is None:
            if submission.job not in self.config.jobs:
                raise UnknownJob(f"no job named {submission.job!r} in the config")
            return
        if not self.config.broker.allow_adhoc:
            raise AdhocDisabled(
                "ad hoc jobs are off: set broker.allow_adhoc: true in the config to allow them"
            )
        gpu = submission.adhoc.gpu
        if gpu is None or self.config.gpu(gpu) is None:
            known = ", ".join(g.name for g in self.config.gpus or [])
            raise SubmissionError("gpu", f"no GPU named {gpu!r} in the config (known: {known})")

    def submit(self, submission: Submission) -> JobId:
        self.check(submission)
        job_id = self.engine.journal.submit(submission)
        self.daemon.wake()
        return job_id

    async def submit_async(self, submission: Submission) -> JobId:
        """`submit` from an event loop: written with whatever else is pending, in one batch."""
        self.check(submission)
        return await self.intake.submit(submission)

    def cancel(self, job_id: str, *, wait: float = 60.0) -> JobState:
        """Cancel a queued job at once; ask the loop to stop a started one (its tenants are
        restored) and wait up to `wait` seconds for it to end. Returns the state then."""
        row = self.engine.journal.job(job_id)
        if row is None:
            raise UnknownJob(f"no job {job_id}")
        if row.state.final:
            return row.state
        if self.engine.journal.set_job_state(
            row.id, JobState.CANCELLED, reason="cancelled", expect=(JobState.QUEUED,)
        ):
            return JobState.CANCELLED
        self.engine.request_cancel(row.id)
        self.daemon.wake()

        def ended() -> bool:
            now = self.engine.journal.job(job_id)
            return now is not None and now.state.final

        wait_until(ended, timeout=wait, poll=0.05, clock=self._clock)
        now = self.engine.journal.job(job_id)
        assert now is not None
        return now.state

    def log_path(self, job_id: str, stream: str) -> Path:
        if self.engine.journal.job(job_id) is None:
            raise UnknownJob(f"no job {job_id}")
        return self.state_dir / "logs" / f"{job_id}.{stream}"
