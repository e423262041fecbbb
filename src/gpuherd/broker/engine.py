"""The broker's engine: one `step()` reads the GPUs, asks the scheduler, and acts.

Every action follows the journal: an intent row before a tenant is touched, completion only
after the GPU backend confirms (memory gone after a release, back after a restore). `replay()`
on start finishes what a crash interrupted: tenants left released are restored, a job whose
process still lives is adopted again, one whose process is gone is failed ("broker-restart").
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpuherd.actuators.base import ActContext, ActuatorError
from gpuherd.actuators.factory import UnsupportedMethod, actuator_for
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


@dataclass
class Active:
    """A job whose process the engine watches."""

    row: JobRow
    spec: JobSpec
    gpu: GpuSpec
    running: RunningJob | None  # None for a job adopted after a restart (no Popen handle)
    seen_on_gpu: bool = False
    workdir: Path = Path(".")


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
            promised = sum(
                a.spec.vram.resolve(dev.memory_total) or 0
                for a in self.active.values()
                if a.gpu.name == gpu.name and not a.seen_on_gpu
            )
            states.append(
                GpuState(name=gpu.name, free=dev.memory_free - gpu.reserve, promised=promised)
            )
        return states

    def _tenant_states(self, held: dict[str, tuple[int, tuple[int, ...]]]) -> list[TenantState]:
        released = {r.tenant for r in self.journal.releases(open_only=True)}
        restored_at = {
            r.tenant: r.restored_at for r in self.journal.releases() if r.restored_at is not None
        }
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

    def submit(self, name: str) -> str:
        if JobName(name) not in self.config.jobs:
            raise KeyError(f"no job named {name!r} in the config")
        return self.journal.submit(name, {"job": name})

    def step(self) -> None:
        snap = self.backend.snapshot()
        self._watch(snap)
        queued = [j for j in self.journal.jobs() if j.state == "queued"]
        if not queued:
            return
        held = self._held(snap)
        requests = []
        for row in queued:
            spec = self.config.jobs[JobName(row.name)]
            gpu = self.config.gpu(spec.gpu) if spec.gpu else None
            if gpu is None:
                self.journal.set_job_state(row.id, "failed", reason="job names no GPU")
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
        spec = self.config.jobs[JobName(row.name)]
        gpu = self.config.gpu(spec.gpu or "")
        assert gpu is not None
        workdir = Path(spec.workdir) if spec.workdir else self.state_dir
        failed = [c for c in preflight(spec, workdir) if not c.ok]
        if failed:  # before any tenant is touched
            self.journal.set_job_state(
                row.id,
                "failed",
                reason="preflight: " + "; ".join(f"{c.check}: {c.detail}" for c in failed),
            )
            return
        self.journal.set_job_state(row.id, "releasing")
        for tenant in victims:
            if not self._release(row.id, tenant, held.get(tenant, (0, ()))):
                self.journal.set_job_state(
                    row.id, "restoring", reason=f"could not release {tenant}"
                )
                self._restore_all(row.id)
                self.journal.set_job_state(row.id, "failed", reason=f"could not release {tenant}")
                return
        self.journal.set_job_state(row.id, "starting")
        running = launch(
            row.id,
            spec,
            gpu=gpu.uuid or str(gpu.index or 0),
            log_dir=self.state_dir / "logs",
            workdir=workdir,
        )
        self.journal.set_job_state(
            row.id, "running", pid=running.pid, pid_start_ticks=running.start_ticks
        )
        job = self.journal.job(row.id)
        assert job is not None
        self.active[row.id] = Active(job, spec, gpu, running, workdir=workdir)

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

    def _restore_one(
        self, release_id: int, tenant: str, kind: str | None, detail: dict[str, Any]
    ) -> bool:
        spec = self.config.tenants[TenantName(tenant)]
        method = next((m for m in spec.preempt if m.kind == kind), None)
        if method is None:
            self.journal.mark_restore_failed(release_id, f"no {kind} method any more")
            return False
        ctx = ActContext(
            tenant=tenant, pids=(), log_dir=self.state_dir / "logs", timeout=spec.restore_timeout
        )
        try:
            actuator_for(method).restore(ctx, detail)
        except (ActuatorError, UnsupportedMethod) as exc:
            self.journal.mark_restore_failed(release_id, str(exc))
            return False
        expected = int(detail.get("held", 1) or 0)
        if expected and not self._wait_held(tenant, lambda b: b > 0, spec.restore_timeout):
            self.journal.mark_restore_failed(release_id, "its memory did not come back in time")
            return False
        self.journal.mark_restored(release_id)
        return True

    def _restore_all(self, job_id: str | None) -> None:
        """Restore in reverse release order (pending_restores is newest first)."""
        for release in self.journal.pending_restores():
            if job_id is not None and release.job_id != job_id:
                continue
            self.journal.restore_intent(release.id)
            self._restore_one(release.id, release.tenant, release.method, release.detail)

    def _watch(self, snap: GpuSnapshot) -> None:
        pids_on_gpu = {p.pid for p in snap.processes}
        for job_id, act in list(self.active.items()):
            if act.running is not None and act.running.pid in pids_on_gpu:
                act.seen_on_gpu = True
            code = self._exit_code(act)
            if code is None:
                if self.clock() - (act.row.started_at or self.clock()) > act.spec.timeout:
                    code = stop(act.running, grace=act.spec.grace) if act.running else -9
                    self.journal.record("job_timeout", "timed out", job_id=job_id)
                else:
                    continue
            self._finish(job_id, act, code)

    def _exit_code(self, act: Active) -> int | None:
        if act.running is not None:
            return act.running.proc.poll()
        alive = act.row.pid is not None and start_ticks(act.row.pid) == act.row.pid_start_ticks
        return None if alive else -1  # an adopted job's exit code is not ours to read

    def _finish(self, job_id: str, act: Active, code: int) -> None:
        del self.active[job_id]
        self.journal.set_job_state(job_id, "restoring", exit_code=code)
        self._restore_all(job_id)  # as soon as the job ends, whatever its outcome
        checks = success(
            act.spec,
            exit_code=code,
            workdir=act.workdir,
            seen_on_gpu=act.seen_on_gpu if act.running else None,
        )
        failed = [c for c in checks if not c.ok]
        result = {
            "exit_code": code,
            "checks": [
                c.__dict__
                if hasattr(c, "__dict__")
                else {"check": c.check, "ok": c.ok, "detail": c.detail}
                for c in checks
            ],
        }
        self.journal.set_job_state(
            job_id,
            "failed" if failed else "succeeded",
            reason="; ".join(f"{c.check}: {c.detail}" for c in failed) or None,
            result=result,
        )

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
        self.journal.set_job_state(job_id, "cancelled", reason="cancelled")
        return "cancelled"

    # --- after a crash ------------------------------------------------------------------------

    def replay(self) -> None:
        for row in self.journal.jobs():
            if (
                row.state in ("running", "starting")
                and row.pid is not None
                and start_ticks(row.pid) == row.pid_start_ticks
            ):
                spec = self.config.jobs[JobName(row.name)]
                gpu = self.config.gpu(spec.gpu or "")
                if gpu is not None:
                    self.journal.record(
                        "job_adopted", f"job process {row.pid} still runs", job_id=row.id
                    )
                    self.active[row.id] = Active(row, spec, gpu, None)
                    continue
            if row.state != "queued":
                self.journal.set_job_state(row.id, "restoring", reason="broker-restart")
                self._restore_all(row.id)
                self.journal.set_job_state(row.id, "failed", reason="broker-restart")
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
