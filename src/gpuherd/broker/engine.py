"""The broker's engine: one `step()` reads the GPUs, asks the scheduler, and acts.

Every action follows the journal: an intent row before a tenant is touched, completion only
after the GPU backend confirms (memory gone after a release, back after a restore). `replay()`
on start finishes what a crash interrupted: tenants left released are restored, a job whose
process still lives is adopted again, one whose process is gone is failed ("broker-restart").
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpuherd.actuators.base import ActContext, ActuatorError
from gpuherd.actuators.factory import UnsupportedMethod, actuator_for
from gpuherd.actuators.health import probe, wait_healthy
from gpuherd.broker.cron import Missed, Schedule, due
from gpuherd.broker.journal import JobRow, Journal
from gpuherd.broker.runner import RunningJob, launch, preflight, stop, success
from gpuherd.broker.scheduler import (
    GpuState,
    JobRequest,
    Preempt,
    TenantState,
    Wait,
    schedule,
)
from gpuherd.gpu.attribution import attribute
from gpuherd.gpu.base import GpuBackend, GpuSnapshot
from gpuherd.gpu.procinfo import start_ticks
from gpuherd.ids import JobName, TenantName
from gpuherd.spec.model import Config, GpuSpec, JobSpec
from gpuherd.units import format_bytes

CRASH_POINTS = ("after_intent", "after_release", "job_running", "after_exit", "mid_restore")


def crash_point(name: str) -> None:
    """Fault injection for the crash tests: GPUHERD_CRASH_AT=<name> kills the broker right
    here, as a power cut or kill -9 would. Never set in normal operation."""
    if os.environ.get("GPUHERD_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class Active:
    """A job whose process the engine watches."""

    row: JobRow
    spec: JobSpec
    gpu: GpuSpec
    running: RunningJob | None  # None for a job adopted after a restart (no Popen handle)
    workdir: Path = Path(".")
    gpu_seen_at: float | None = None  # when one of its processes first showed on the GPU
    peak_vram: int = 0
    vram_now: int = 0
    stopped_for: str | None = None  # why the broker stopped it (timeout, not on the GPU)

    @property
    def pid(self) -> int:
        return self.running.pid if self.running is not None else self.row.pid or 0


def _usage_by_group(snap: GpuSnapshot) -> dict[int, int]:
    """GPU bytes per process group. A job runs in its own group (its pid is the group id), so
    its children (a renderer spawned by a wrapper script) count as the job."""
    used: dict[int, int] = {}
    for proc in snap.processes:
        try:
            group = os.getpgid(proc.pid)
        except OSError:  # gone, or in another pid namespace
            group = proc.pid
        used[group] = used.get(group, 0) + (proc.used_bytes or 0)
    return used


@dataclass
class Engine:
    config: Config
    backend: GpuBackend
    journal: Journal
    state_dir: Path
    clock: Callable[[], float] = time.time
    poll: float = 0.1
    waiting: dict[str, str] = field(default_factory=dict)  # job id -> reason
    active: dict[str, Active] = field(default_factory=dict)
    _adhoc: dict[str, JobSpec] = field(default_factory=dict)
    notify: Callable[[], None] | None = None  # called from a waiter thread when a job exits
    last_snapshot: GpuSnapshot | None = None
    up_since: float = 0.0  # schedules missed before this were missed while the broker was down

    def __post_init__(self) -> None:
        self.up_since = self.up_since or self.clock()

    # --- views of the hardware --------------------------------------------------------------

    def _gpu_index(self, gpu: GpuSpec, snap: GpuSnapshot) -> int | None:
        for dev in snap.devices:
            if (gpu.uuid and dev.uuid == gpu.uuid) or (gpu.uuid is None and dev.index == gpu.index):
                return dev.index
        return None

    def _held(self, snap: GpuSnapshot) -> dict[str, tuple[int, tuple[int, ...]]]:
        """tenant -> (bytes its processes hold, their pids)."""
        held: dict[str, tuple[int, tuple[int, ...]]] = {}
        for item in attribute(snap, self.config.tenants):
            if item.tenant is None:
                continue
            total, pids = held.get(item.tenant, (0, ()))
            held[item.tenant] = (total + (item.process.used_bytes or 0), (*pids, item.process.pid))
        return held

    def _gpu_states(self, snap: GpuSnapshot) -> list[GpuState]:
        states = []
        for gpu in self.config.gpus or []:
            index = self._gpu_index(gpu, snap)
            dev = snap.device(index) if index is not None else None
            if dev is None:
                continue
            # A job keeps its whole `vram` until it exits: one that has not allocated yet, or
            # has freed before exiting, would otherwise lend out the room its tenants need back.
            promised = sum(
                max(0, (a.spec.vram.resolve(dev.memory_total) or 0) - a.vram_now)
                for a in self.active.values()
                if a.gpu.name == gpu.name
            )
            states.append(
                GpuState(name=gpu.name, free=dev.memory_free - gpu.reserve, promised=promised)
            )
        return states

    def _tenant_states(self, held: dict[str, tuple[int, tuple[int, ...]]]) -> list[TenantState]:
        released = {r.tenant for r in self.journal.releases(open_only=True)}
        restored_at = self.journal.last_restored()  # not every release ever, at every step
        states = []
        for name, t in self.config.tenants.items():
            last = restored_at.get(name)
            states.append(
                TenantState(
                    name=name,
                    gpu=t.gpu or "",
                    priority=t.priority,
                    preemptible=t.preemptible,
                    held=held.get(name, (0, ()))[0],
                    max_downtime=t.max_downtime,
                    state="released" if name in released else "running",
                    cooldown_until=None if last is None else last + t.cooldown,
                )
            )
        return states

    # --- the loop -------------------------------------------------------------------------

    def submit(
        self,
        name: str,
        *,
        adhoc: dict[str, Any] | None = None,
        not_before: float | None = None,
    ) -> str:
        """Queue a job from the config, or (when `broker.allow_adhoc`) an ad hoc one whose
        fields are a job entry's. Raises KeyError, PermissionError or ValueError."""
        spec: dict[str, Any] = {"job": name}
        if adhoc is not None:
            if not self.config.broker.allow_adhoc:
                raise PermissionError(
                    "ad hoc jobs are off: set broker.allow_adhoc: true in the config to allow them"
                )
            job = JobSpec.model_validate(adhoc)  # pydantic's ValidationError is a ValueError
            if job.gpu is None or self.config.gpu(job.gpu) is None:
                known = ", ".join(g.name for g in self.config.gpus or [])
                raise ValueError(f"gpu: no GPU named {job.gpu!r} in the config (known: {known})")
            spec = {"adhoc": adhoc}
        elif JobName(name) not in self.config.jobs:
            raise KeyError(f"no job named {name!r} in the config")
        if not_before is not None:
            spec["not_before"] = not_before
        return self.journal.submit(name, spec)

    def _job_spec(self, row: JobRow) -> JobSpec | None:
        """The spec a queued or running job runs with: its ad hoc fields, else its config
        entry (None if the config no longer has it)."""
        if "adhoc" in row.spec:
            if row.id not in self._adhoc:  # validated once, not at every step
                self._adhoc[row.id] = JobSpec.model_validate(row.spec["adhoc"])
            return self._adhoc[row.id]
        return self.config.jobs.get(JobName(row.name))

    def _fire_schedules(self) -> None:
        schedules = [
            Schedule(name, job.schedule, job.catch_up)
            for name, job in self.config.jobs.items()
            if job.schedule
        ]
        if not schedules:
            return
        now = self.clock()
        marks = self.journal.schedule_marks()
        outcomes, new_marks = due(
            schedules, marks, now=now, up_since=self.up_since, tz=self.config.timezone
        )
        if new_marks == marks:
            return
        active = {row.name for row in self.journal.jobs() if "adhoc" not in row.spec}
        runs = []
        for out in outcomes:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(out.due))
            if isinstance(out, Missed):
                self.journal.record("schedule_missed", f"{out.job} at {when}: {out.reason}")
            elif out.job in active:  # never two runs of one scheduled job at once
                self.journal.record(
                    "schedule_skipped", f"{out.job} at {when}: the previous run is still active"
                )
            else:
                how = "caught up after a broker restart" if out.caught_up else "on schedule"
                spec = {"job": out.job, "scheduled_for": out.due}
                runs.append((out.job, spec, f"{out.job} at {when}, {how}"))
        self.journal.fire_schedules(new_marks, runs)

    def step(self) -> None:
        snap = self.last_snapshot = self.backend.snapshot()
        if self._watch(snap) + self._retry_restores():
            # Jobs ended and tenants came back: the reading before that is stale, and
            # scheduling on it would admit a job into memory the restores just took.
            snap = self.last_snapshot = self.backend.snapshot()
        self._fire_schedules()
        now = self.clock()
        queued = []
        for row in self.journal.jobs():
            if row.state != "queued":
                continue
            not_before = row.spec.get("not_before")
            if not_before is not None and now < not_before:
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(not_before))
                self.waiting[row.id] = f"not before {when}"
                continue
            queued.append(row)
        if not queued:
            return
        held = self._held(snap)
        requests = []
        for row in queued:
            spec = self._job_spec(row)
            gpu = self.config.gpu(spec.gpu) if spec is not None and spec.gpu else None
            if spec is None or gpu is None:
                why = "no such job in the config any more" if spec is None else "job names no GPU"
                self._end(row.id, "failed", reason=why, result={})
                continue
            total = (snap.device(self._gpu_index(gpu, snap) or 0) or snap.devices[0]).memory_total
            requests.append(
                JobRequest(
                    id=row.id,
                    gpu=gpu.name,
                    vram=spec.vram.resolve(total) or 0,
                    priority=spec.priority,
                    timeout=spec.timeout,
                    submitted_at=row.submitted_at,
                )
            )
        decisions = schedule(
            gpus=self._gpu_states(snap),
            tenants=self._tenant_states(held),
            queue=requests,
            now=self.clock(),
        )
        rows = {r.id: r for r in queued}
        for decision in decisions:
            if isinstance(decision, Wait):
                self.waiting[decision.job] = decision.reason
                continue
            self.waiting.pop(decision.job, None)
            victims = decision.victims if isinstance(decision, Preempt) else ()
            self._start(rows[decision.job], victims, held)

    def _start(
        self, row: JobRow, victims: tuple[str, ...], held: dict[str, tuple[int, tuple[int, ...]]]
    ) -> None:
        spec = self._job_spec(row)
        gpu = self.config.gpu(spec.gpu or "") if spec is not None else None
        assert spec is not None
        assert gpu is not None
        workdir = Path(spec.workdir) if spec.workdir else self.state_dir
        failed = [c for c in preflight(spec, workdir) if not c.ok]
        if failed:  # before any tenant is touched
            self._end(
                row.id,
                "failed",
                reason="preflight: " + "; ".join(f"{c.check}: {c.detail}" for c in failed),
                result={"preflight": [{"check": c.check, "detail": c.detail} for c in failed]},
            )
            return
        self.journal.set_job_state(row.id, "releasing")
        for tenant in victims:
            if not self._release(row.id, tenant, held.get(tenant, (0, ()))):
                self.journal.set_job_state(
                    row.id, "restoring", reason=f"could not release {tenant}"
                )
                self._restore_all(row.id)
                self._end(row.id, "failed", reason=f"could not release {tenant}", result={})
                return
        self.journal.set_job_state(row.id, "starting")
        try:
            running = launch(
                row.id,
                spec,
                gpu=gpu.uuid or str(gpu.index or 0),
                log_dir=self.state_dir / "logs",
                workdir=workdir,
            )
        except OSError as exc:  # vanished binary, bad workdir: give the tenants back at once
            self.journal.set_job_state(row.id, "restoring", reason=f"could not start: {exc}")
            self._restore_all(row.id)
            self._end(row.id, "failed", reason=f"could not start: {exc}", result={})
            return
        self.journal.set_job_state(
            row.id, "running", pid=running.pid, pid_start_ticks=running.start_ticks
        )
        job = self.journal.job(row.id)
        assert job is not None
        self.active[row.id] = Active(job, spec, gpu, running, workdir=workdir)
        if self.notify is not None:
            notify = self.notify
            threading.Thread(
                target=lambda: (running.proc.wait(), notify()), name=f"wait-{row.id}", daemon=True
            ).start()
        crash_point("job_running")

    def _release(self, job_id: str, tenant: str, held: tuple[int, tuple[int, ...]]) -> bool:
        """Try the tenant's methods in order until the backend shows its memory gone."""
        spec = self.config.tenants[TenantName(tenant)]
        for method in spec.preempt:
            try:
                actuator = actuator_for(method)
            except UnsupportedMethod as exc:
                self.journal.record("release_skipped", str(exc), job_id=job_id, tenant=tenant)
                continue
            release_id = self.journal.release_intent(job_id, tenant, method.kind)
            crash_point("after_intent")
            ctx = ActContext(
                tenant=tenant,
                pids=held[1],
                log_dir=self.state_dir / "logs",
                timeout=spec.release_timeout,
            )
            try:
                detail = actuator.release(ctx)
            except ActuatorError as exc:
                self.journal.record("release_failed", str(exc), job_id=job_id, tenant=tenant)
                detail = None
            if detail is not None and self._wait_held(
                tenant, lambda b: b == 0, spec.release_timeout
            ):
                self.journal.mark_released(
                    release_id, method=method.kind, detail={**detail, "held": held[0]}
                )
                crash_point("after_release")
                return True
            # Not freed: restore what this attempt may have half done, then try the next method.
            self.journal.restore_intent(release_id)
            self._restore_one(release_id, tenant, method.kind, detail or {})
        return False

    def _wait_held(self, tenant: str, ok: Callable[[int], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            held = self._held(self.backend.snapshot()).get(tenant, (0, ()))[0]
            if ok(held):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(self.poll)

    def _wait_free(self, gpu_name: str | None, need: int, *, timeout: float) -> int | None:
        """None once `need` bytes are free on the GPU, else the free bytes seen at the end (a
        finished job's memory may take a moment to go back to the driver)."""
        gpu = self.config.gpu(gpu_name or "")
        deadline = time.monotonic() + timeout
        while True:
            snap = self.backend.snapshot()
            index = self._gpu_index(gpu, snap) if gpu is not None else None
            dev = snap.device(index) if index is not None else None
            if dev is None or dev.memory_free >= need:
                return None
            if time.monotonic() >= deadline:
                return dev.memory_free
            time.sleep(self.poll)

    def _restore_one(
        self, release_id: int, tenant: str, kind: str | None, detail: dict[str, Any]
    ) -> bool:
        health = self.config.tenants[TenantName(tenant)].health
        if self._held(self.backend.snapshot()).get(tenant, (0, ()))[0] > 0:
            # Trust the hardware: it holds memory, so it runs (a crash hit between the intent
            # and the release, or it came back by itself). Restoring would start it twice;
            # only its health check, if it has one, may still say no.
            why = None if health is None else probe(health, timeout=10.0)
            why = None if why is None else f"health check: {why}"
        else:
            why = self._try_restore(tenant, kind, detail)
        if why is not None:
            self.journal.mark_restore_failed(release_id, why)
            return False
        self.journal.mark_restored(release_id)
        return True

    def _try_restore(self, tenant: str, kind: str | None, detail: dict[str, Any]) -> str | None:
        """Restore with the method that released it and verify; None on success, else why."""
        spec = self.config.tenants[TenantName(tenant)]
        method = next((m for m in spec.preempt if m.kind == kind), None)
        if method is None:
            return f"no {kind} method any more"
        expected = int(detail.get("held", 1) or 0)
        free = self._wait_free(spec.gpu, expected, timeout=min(spec.restore_timeout, 10.0))
        if free is not None:
            # Do not even try: a model load would OOM and a cuda-checkpoint restore without
            # room fails for good. Retried with backoff once the memory is back.
            return f"needs {format_bytes(expected)} free on {spec.gpu}, {format_bytes(free)} free"
        ctx = ActContext(
            tenant=tenant, pids=(), log_dir=self.state_dir / "logs", timeout=spec.restore_timeout
        )
        deadline = time.monotonic() + spec.restore_timeout
        try:
            actuator_for(method).restore(ctx, detail)
        except (ActuatorError, UnsupportedMethod) as exc:
            return str(exc)
        if expected and not self._wait_held(tenant, lambda b: b > 0, spec.restore_timeout):
            return "its memory did not come back in time"
        if spec.health is not None:  # memory alone does not prove it serves
            left = max(deadline - time.monotonic(), 1.0)
            why = wait_healthy(spec.health, left, poll=min(self.poll * 5, 0.5))
            if why is not None:
                return f"health check: {why}"
        return None

    def _restore_all(self, job_id: str | None) -> None:
        """Restore in reverse release order (pending_restores is newest first)."""
        done = 0
        for release in self.journal.pending_restores():
            if job_id is not None and release.job_id != job_id:
                continue
            if done:
                crash_point("mid_restore")
            self.journal.restore_intent(release.id)
            self._restore_one(release.id, release.tenant, release.method, release.detail)
            done += 1

    def _retry_restores(self) -> int:
        """Failed restores of jobs no longer running, retried with capped exponential backoff
        (never dropped: a tenant left down is the 4 AM failure this tool exists to prevent)."""
        broker, now, tried = self.config.broker, self.clock(), 0
        for release in self.journal.pending_restores():
            if release.state != "restore_failed" or release.job_id in self.active:
                continue
            wait = min(broker.restore_retry_max, broker.restore_retry * 2 ** (release.attempts - 1))
            if now < (release.failed_at or 0) + wait:
                continue
            self.journal.restore_intent(release.id)
            self._restore_one(release.id, release.tenant, release.method, release.detail)
            tried += 1
        return tried

    def _watch(self, snap: GpuSnapshot) -> int:
        """Follow the running jobs; returns how many ended."""
        now = self.clock()
        ended_jobs = 0
        usage = _usage_by_group(snap) if self.active else {}
        for job_id, act in list(self.active.items()):
            used = usage.get(act.pid)
            if used is not None and act.gpu_seen_at is None:
                act.gpu_seen_at = now
            act.vram_now = used or 0
            act.peak_vram = max(act.peak_vram, act.vram_now)
            ended, code = self._exit_code(act)
            if not ended:
                act.stopped_for = self._must_stop(act, now - (act.row.started_at or now))
                if act.stopped_for is None:
                    continue
                self.journal.record("job_stopping", act.stopped_for, job_id=job_id)
                code = self._stop(act)
            self._finish(job_id, act, code)
            ended_jobs += 1
        return ended_jobs

    def _must_stop(self, act: Active, elapsed: float) -> str | None:
        if elapsed > act.spec.timeout:
            return f"timed out after {elapsed:.0f}s (timeout {act.spec.timeout:g}s)"
        for check in act.spec.success:
            if check.not_on_cpu and act.gpu_seen_at is None and elapsed > check.not_on_cpu.within:
                # Seed 000: a render on llvmpipe runs for hours; stop it now, not at the end.
                return (
                    f"not on the GPU after {check.not_on_cpu.within:g}s: stopped early "
                    "(it is probably rendering or computing on the CPU)"
                )
        return None

    def _stop(self, act: Active) -> int | None:
        if act.running is not None:
            return stop(act.running, grace=act.spec.grace)
        # Adopted after a restart: no Popen handle, so signal the group and watch it go.
        ticks = act.row.pid_start_ticks
        for sig, wait_for in ((signal.SIGTERM, act.spec.grace), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(act.pid, sig)
            except OSError:
                break
            deadline = time.monotonic() + wait_for
            while start_ticks(act.pid) == ticks and time.monotonic() < deadline:
                time.sleep(0.05)
        return None

    def _exit_code(self, act: Active) -> tuple[bool, int | None]:
        """(ended, exit code); an adopted job's exit code is not ours to read (None)."""
        if act.running is not None:
            code = act.running.proc.poll()
            return code is not None, code
        return start_ticks(act.pid) != act.row.pid_start_ticks, None

    def _finish(self, job_id: str, act: Active, code: int | None) -> None:
        del self.active[job_id]
        crash_point("after_exit")
        self.journal.set_job_state(job_id, "restoring", exit_code=code)
        self._restore_all(job_id)  # as soon as the job ends, whatever its outcome
        started = act.row.started_at or self.clock()
        checks = success(
            act.spec,
            exit_code=code,
            workdir=act.workdir,
            gpu_after=None if act.gpu_seen_at is None else act.gpu_seen_at - started,
        )
        reasons = [act.stopped_for] if act.stopped_for else []
        reasons += [f"{c.check}: {c.detail}" for c in checks if not c.ok]
        outcome = "failed" if reasons else "succeeded"
        result = {
            "exit_code": code,
            "stopped_for": act.stopped_for,
            "peak_vram_bytes": act.peak_vram,
            "checks": [{"check": c.check, "ok": c.ok, "detail": c.detail} for c in checks],
        }
        self._end(job_id, outcome, reason="; ".join(reasons) or None, result=result)

    def _end(
        self, job_id: str, outcome: str, *, reason: str | None, result: dict[str, Any]
    ) -> None:
        """The final state, with the result record in the journal and as JSON in the state
        dir: times, which tenants were released, by what, and how long each was down."""
        self.journal.set_job_state(job_id, outcome, reason=reason)
        row = self.journal.job(job_id)
        assert row is not None
        result = {
            "id": job_id,
            "name": row.name,
            "outcome": outcome,
            "reason": reason,
            "submitted_at": row.submitted_at,
            "started_at": row.started_at,
            "ended_at": row.ended_at,
            "ran_s": None
            if row.started_at is None or row.ended_at is None
            else row.ended_at - row.started_at,
            **result,
            "released": [
                {
                    "tenant": r.tenant,
                    "method": r.method,
                    "state": r.state,
                    "released_at": r.released_at,
                    "restored_at": r.restored_at,
                    "down_s": None
                    if r.released_at is None or r.restored_at is None
                    else r.restored_at - r.released_at,
                }
                for r in self.journal.releases(job_id=job_id)
            ],
        }
        self.journal.set_result(job_id, result)
        results = self.state_dir / "results"
        results.mkdir(mode=0o700, exist_ok=True)
        tmp = results / f".{job_id}.json.tmp"
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.replace(results / f"{job_id}.json")  # never a half-written record

    def cancel(self, job_id: str) -> str:
        """Cancel a queued job, or stop a running one (its tenants are restored at once)."""
        row = self.journal.job(job_id)
        if row is None:
            raise KeyError(job_id)
        if row.state == "queued":
            self.journal.set_job_state(job_id, "cancelled", reason="cancelled")
            self.waiting.pop(job_id, None)
            return "cancelled"
        act = self.active.get(job_id)
        if act is None:
            return row.state
        code = stop(act.running, grace=act.spec.grace) if act.running else -15
        del self.active[job_id]
        self.journal.set_job_state(job_id, "restoring", exit_code=code, reason="cancelled")
        self._restore_all(job_id)
        self._end(job_id, "cancelled", reason="cancelled", result={"exit_code": code})
        return "cancelled"

    # --- after a crash ------------------------------------------------------------------------

    def replay(self) -> None:
        for row in self.journal.jobs():
            if (
                row.state in ("running", "starting")
                and row.pid is not None
                and start_ticks(row.pid) == row.pid_start_ticks
            ):
                spec = self._job_spec(row)
                gpu = self.config.gpu(spec.gpu or "") if spec is not None else None
                if spec is not None and gpu is not None:
                    self.journal.record(
                        "job_adopted", f"job process {row.pid} still runs", job_id=row.id
                    )
                    self.active[row.id] = Active(row, spec, gpu, None)
                    continue
            if row.state != "queued":
                self.journal.set_job_state(row.id, "restoring", reason="broker-restart")
                self._restore_all(row.id)
                self._end(row.id, "failed", reason="broker-restart", result={})
        # Releases of jobs that are neither queued nor watched: give the tenants back.
        watched = set(self.active)
        for release in self.journal.pending_restores():
            if release.job_id not in watched:
                self.journal.restore_intent(release.id)
                self._restore_one(release.id, release.tenant, release.method, release.detail)

    def run_until_idle(self, timeout: float = 60.0) -> None:
        """Step until no job is queued or running (tests, one-shot runs)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.step()
            queued = [j for j in self.journal.jobs() if j.state == "queued"]
            if not self.active and (not queued or all(j.id in self.waiting for j in queued)):
                return
            time.sleep(self.poll)
        raise TimeoutError("jobs still running")
