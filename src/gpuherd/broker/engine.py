"""The broker's engine: one `step()` reads the GPUs, asks the scheduler, and acts.

It orchestrates and decides nothing alone: the scheduler chooses, the keeper releases and
restores tenants under journal intents, the launcher runs jobs, the checks judge them, and
results are recorded. `replay()` on start finishes what a crash interrupted: a job whose process
still lives is followed again, one that is gone is failed ("broker-restart"), and tenants left
released are restored.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gpuherd.broker.accounting import (
    NOTHING,
    Held,
    device_for,
    gpu_states,
    held_by_tenant,
    tenant_states,
)
from gpuherd.broker.checks import preflight
from gpuherd.broker.clock import SYSTEM, Clock
from gpuherd.broker.ending import Ender
from gpuherd.broker.faults import crash_point
from gpuherd.broker.firing import fire_schedules
from gpuherd.broker.following import Followed, Published, must_stop
from gpuherd.broker.guarding import Guarding
from gpuherd.broker.journal import Journal
from gpuherd.broker.keeper import Keeper
from gpuherd.broker.launcher import Launcher, LaunchError
from gpuherd.broker.launchers import LAUNCHERS
from gpuherd.broker.records import JobRow
from gpuherd.broker.recovery import Recovery
from gpuherd.broker.scheduler import JobRequest, Preempt, Wait, schedule
from gpuherd.broker.states import JobState
from gpuherd.gpu.base import GpuBackend, GpuSnapshot
from gpuherd.ids import JobId, TenantName
from gpuherd.spec.model import Config, JobSpec

_ENDING = (JobState.RELEASING, JobState.STARTING, JobState.RUNNING, JobState.RESTORING)


@dataclass
class Engine:
    config: Config
    backend: GpuBackend
    journal: Journal
    state_dir: Path
    clock: Clock = SYSTEM
    poll: float = 0.1
    notify: Callable[[], None] | None = None  # wakes the loop when a job process exits
    launcher: Launcher | None = None
    published: Published = field(default_factory=Published)
    up_since: float | None = None  # schedules due before this were missed while the broker was down

    def __post_init__(self) -> None:
        self.up_since = self.up_since or self.clock.now()
        self.followed: dict[JobId, Followed] = {}
        self._cancels: set[JobId] = set()
        self._cancels_lock = threading.Lock()
        self.waiting: dict[JobId, str] = {}
        if self.launcher is None:
            self.launcher = LAUNCHERS["local"](lambda: self.notify and self.notify())
        self.keeper = Keeper(
            config=self.config,
            backend=self.backend,
            journal=self.journal,
            log_dir=self.state_dir / "logs",
            clock=self.clock,
            poll=self.poll,
            promised=self._promised,
        )
        self.ender = Ender(self.journal, self.keeper, self.state_dir, self.clock)
        self.recovery = Recovery(
            self.config, self.journal, self._launcher, self.keeper, self.ender, self.state_dir
        )
        self.guarding = Guarding(
            self.config,
            self.journal,
            self.keeper,
            self.clock,
            self._promised,
            notify=lambda: self.notify() if self.notify else None,
        )

    @property
    def _launcher(self) -> Launcher:
        assert self.launcher is not None
        return self.launcher

    # --- what the scheduler sees --------------------------------------------------------------

    def _promised(self, gpu: str) -> int:
        """A running job keeps its whole `vram` until it exits: one that has not allocated yet
        (or freed before exiting) would otherwise lend out room it or its tenants need."""
        return sum(max(0, f.vram - f.vram_now) for f in self.followed.values() if f.gpu.name == gpu)

    def job_of(self, row: JobRow) -> JobSpec | None:
        """What a queued or running job runs: its ad hoc fields, else its config entry."""
        return row.submission.adhoc or self.config.jobs.get(row.submission.job)

    # --- the loop -------------------------------------------------------------------------

    def step(self) -> None:
        snap = self.backend.snapshot()
        self._take_cancels()
        # The unfinished jobs, read once a step (with hundreds queued, reading them is the cost).
        rows = self.journal.jobs()
        # What a step that failed halfway left open (its jobs are in no step now).
        stale = self.recovery.reconcile(self.followed, retry_failed=False, rows=rows)
        if self._watch(snap) + self.keeper.retry_failed(skip=set(self.followed)):
            # Jobs ended and tenants came back: the reading before that is stale, and
            # scheduling on it would admit a job into memory the restores just took.
            snap = self.backend.snapshot()
        now, up_since = self.clock.now(), self.up_since or 0.0
        if fire_schedules(self.config, self.journal, now=now, up_since=up_since) or stale:
            rows = self.journal.jobs()
        self._schedule(snap, rows)
        self.guarding.step(snap)  # after the jobs: room promised to them is off limits
        self.published = Published(
            snapshot=snap,
            waiting=dict(self.waiting),
            vram={job_id: f.vram_now for job_id, f in self.followed.items()},
        )

    def _schedule(self, snap: GpuSnapshot, rows: list[JobRow]) -> None:
        """`rows`: this step's reading of the unfinished jobs; ended ones are not queued, and a
        queued one cancelled since is caught when it is moved to releasing."""
        queued = {r.id: r for r in rows if r.state is JobState.QUEUED}
        self.waiting = {k: v for k, v in self.waiting.items() if k in queued}
        if not queued:
            return
        held = held_by_tenant(snap, self.config)
        requests = []
        for row in queued.values():
            job = self.job_of(row)
            gpu = self.config.gpu(job.gpu) if job is not None and job.gpu else None
            if job is None or gpu is None:
                why = "no such job in the config any more" if job is None else "job names no GPU"
                self.ender.end(row.id, JobState.FAILED, why, {})
                continue
            dev = device_for(gpu, snap)
            requests.append(
                JobRequest(
                    id=row.id,
                    gpu=gpu.name,
                    vram=job.vram.resolve(dev.memory_total if dev else gpu.memory) or 0,
                    priority=job.priority,
                    timeout=job.timeout,
                    submitted_at=row.submitted_at,
                    not_before=row.submission.not_before,
                )
            )
        decisions = schedule(
            gpus=gpu_states(self.config, snap, self._promised),
            tenants=tenant_states(self.config, self.journal, held),
            queue=requests,
            now=self.clock.now(),
        )
        vram = {r.id: r.vram for r in requests}
        for decision in decisions:
            if isinstance(decision, Wait):
                self.waiting[JobId(decision.job)] = decision.reason
                continue
            job_id = JobId(decision.job)
            self.waiting.pop(job_id, None)
            victims = decision.victims if isinstance(decision, Preempt) else ()
            try:
                self._start(queued[job_id], victims, held, vram[job_id])
            except Exception as exc:  # one job's failure never stops the others
                self._abort_job(
                    job_id, JobState.FAILED, f"broker error: {type(exc).__name__}: {exc}"
                )

    def _start(
        self, row: JobRow, victims: tuple[str, ...], held: dict[TenantName, Held], vram: int
    ) -> None:
        job = self.job_of(row)
        gpu = self.config.gpu(job.gpu or "") if job is not None else None
        assert job is not None  # checked by _schedule this step
        assert gpu is not None
        workdir = Path(job.workdir) if job.workdir else self.state_dir
        failed = [c for c in preflight(job, workdir) if not c.ok]
        if failed:  # before any tenant is touched
            reason = "preflight: " + "; ".join(f"{c.check}: {c.detail}" for c in failed)
            extra = {"preflight": [{"check": c.check, "detail": c.detail} for c in failed]}
            self.ender.end(row.id, JobState.FAILED, reason, extra)
            return
        problems = self._launcher.prepare(row.id, row.name, job)  # a Kubernetes Job's volumes
        if problems:
            extra = {"preflight": [{"check": self._launcher.name, "detail": p} for p in problems]}
            self.ender.end(row.id, JobState.FAILED, "preflight: " + "; ".join(problems), extra)
            return
        if not self.journal.set_job_state(row.id, JobState.RELEASING, expect=(JobState.QUEUED,)):
            return  # cancelled meanwhile
        for tenant in victims:
            name = TenantName(tenant)
            if not self.keeper.release(row.id, name, held.get(name, NOTHING)):
                self._abort_job(row.id, JobState.FAILED, f"could not release {tenant}")
                return
        self.journal.set_job_state(row.id, JobState.STARTING)
        try:
            handle = self._launcher.launch(
                row.id, job, gpu=gpu, workdir=workdir, log_dir=self.state_dir / "logs"
            )
        except LaunchError as exc:  # vanished binary, bad workdir: give the tenants back at once
            self._abort_job(row.id, JobState.FAILED, f"could not start: {exc}")
            return
        self.journal.set_job_state(row.id, JobState.RUNNING, handle=handle)
        started = self.journal.job(row.id)
        assert started is not None
        self.followed[row.id] = Followed(started, job, gpu, handle, workdir, vram)
        crash_point("job_running")

    def _watch(self, snap: GpuSnapshot) -> int:
        """Follow the running jobs; returns how many ended."""
        now, ended = self.clock.now(), 0
        for job_id, f in list(self.followed.items()):
            used = [
                p.used_bytes or 0 for p in snap.processes if self._launcher.owns(f.handle, p.pid)
            ]
            if used and f.gpu_seen_at is None:
                f.gpu_seen_at = now
            f.vram_now = sum(used)
            f.peak_vram = max(f.peak_vram, f.vram_now)
            exited = self._launcher.poll(f.handle)
            if exited is None:
                f.stopped_for = f.stopped_for or must_stop(f, now - (f.row.started_at or now))
                if f.stopped_for is None:
                    continue
                self.journal.record("job_stopping", f.stopped_for, job_id=job_id)
                exited = self._launcher.stop(f.handle, grace=f.job.grace)
            del self.followed[job_id]
            self.ender.finish(f, exited)
            ended += 1
        return ended

    # --- cancel: asked from any thread, done by the loop ------------------------------------

    def _abort_job(self, job_id: JobId, outcome: JobState, reason: str) -> None:
        self.followed.pop(job_id, None)
        self.ender.abort(job_id, outcome, reason)

    def request_cancel(self, job_id: JobId) -> None:
        with self._cancels_lock:
            self._cancels.add(job_id)

    def _take_cancels(self) -> None:
        with self._cancels_lock:
            asked, self._cancels = self._cancels, set()
        for job_id in asked:
            f = self.followed.get(job_id)
            if f is not None:
                f.stopped_for = "cancelled"  # _watch stops it and restores its tenants
            else:
                self._abort_job(job_id, JobState.CANCELLED, "cancelled")

    # --- after a crash ------------------------------------------------------------------------

    def replay(self) -> None:
        """On start: finish what a crash left open, failed restores included."""
        self.recovery.reconcile(self.followed, retry_failed=True)
