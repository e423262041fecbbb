"""Reconciling the journal with what runs: on start after a crash, and at every step after a
step that failed halfway (a full disk, a bug).

A job whose process still runs is followed again; one that ended while nobody watched is judged
by the exit status its group leader wrote down; one that never started is requeued after its
tenants come back. Releases nobody follows are restored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gpuherd.broker.ending import Ender
from gpuherd.broker.following import Followed
from gpuherd.broker.guard import is_guard_job
from gpuherd.broker.journal import Journal
from gpuherd.broker.keeper import Keeper
from gpuherd.broker.launcher import Exited, Launcher
from gpuherd.broker.records import JobRow
from gpuherd.broker.states import JobState, ReleaseState
from gpuherd.ids import JobId
from gpuherd.spec.model import Config

_OPEN = (JobState.RELEASING, JobState.STARTING, JobState.RUNNING, JobState.RESTORING)
NEVER_STARTED = "requeued: the broker stopped before the job started"


@dataclass
class Recovery:
    config: Config
    journal: Journal
    launcher: Launcher
    keeper: Keeper
    ender: Ender
    state_dir: Path

    def reconcile(
        self,
        followed: dict[JobId, Followed],
        *,
        retry_failed: bool,
        rows: list[JobRow] | None = None,
    ) -> bool:
        """Returns whether it changed anything (`rows`: the unfinished jobs, if just read)."""
        changed = False
        for row in self.journal.jobs() if rows is None else rows:
            if row.state in _OPEN and row.id not in followed:
                self._recover(row, followed)
                changed = True
        for release in self.journal.pending_restores():
            failed = release.state is ReleaseState.RESTORE_FAILED
            if is_guard_job(release.job_id):
                continue  # the guard brings its own back, once the room is there (guarding)
            if release.job_id not in followed and (retry_failed or not failed):
                self.keeper.restore(release)
                changed = True
        return changed

    def _recover(self, row: JobRow, followed: dict[JobId, Followed]) -> None:
        job = row.submission.adhoc or self.config.jobs.get(row.submission.job)
        gpu = self.config.gpu(job.gpu or "") if job is not None else None
        if job is None or gpu is None:
            self.ender.abort(row.id, JobState.FAILED, "broker-restart: the job left the config")
            return
        handle = row.handle
        if handle is None and row.state is JobState.STARTING:
            handle = self.launcher.find(row.id, self.state_dir / "logs")
            if handle is not None:  # started just before the crash
                self.journal.set_job_state(row.id, JobState.RUNNING, handle=handle)
                row = self.journal.job(row.id) or row
        if handle is None:
            self.ender.requeue(row.id, NEVER_STARTED)
            return
        workdir = Path(job.workdir) if job.workdir else self.state_dir
        vram = job.vram.resolve(gpu.memory) or 0
        f = Followed(row, job, gpu, handle, workdir, vram, watched=False)
        if row.state is JobState.RESTORING:  # it had ended; its tenants were coming back
            self.ender.finish(f, Exited(row.exit_code))
        elif self.launcher.adopt(handle):
            self.journal.record("job_adopted", "job process still runs", job_id=row.id)
            followed[row.id] = f
        else:
            exited = self.launcher.poll(handle) or Exited(None)
            how = "unknown" if exited.code is None else str(exited.code)
            self.journal.record(
                "job_ended_unwatched", f"ended while the broker was down, exit {how}", job_id=row.id
            )
            self.ender.finish(f, exited)
