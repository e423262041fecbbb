"""The tenant keeper: release a tenant and verify it on the GPU, restore it and verify that,
retry a failed restore with backoff. Every step under a journal row first.

A restore is driven by the plan journaled with the release (the method's settings, the
tenant's GPU, restore timeout and health), never by the config of the day: a tenant removed
from the config while it was down still comes back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpuherd.actuators.base import ActContext, ActuatorError
from gpuherd.actuators.factory import UnsupportedMethod, actuator_for
from gpuherd.actuators.health import probe, wait_healthy
from gpuherd.broker.accounting import NOTHING, Held, device_for, held_by_tenant
from gpuherd.broker.claims import GpuClaim
from gpuherd.broker.clock import Clock, wait_until
from gpuherd.broker.faults import crash_point
from gpuherd.broker.guard import is_guard_job
from gpuherd.broker.journal import Journal
from gpuherd.broker.records import ReleaseRow, RestorePlan
from gpuherd.broker.states import ReleaseState
from gpuherd.gpu.attribution import pod_addresses
from gpuherd.gpu.base import GpuBackend
from gpuherd.gpu.procinfo import start_ticks
from gpuherd.ids import GpuName, JobId, TenantName
from gpuherd.spec.model import (
    CheckpointMethod,
    Config,
    HttpMethod,
    KubernetesMethod,
    Match,
    OllamaMethod,
    TenantSpec,
    VllmSleepMethod,
)
from gpuherd.units import format_bytes

_ROOM_WAIT = 10.0  # at most this long waiting for room before a restore counts as failed
# Methods whose restore may run again harmlessly (scale to the recorded count, load the
# recorded models, wake): after a failed release attempt they are always undone.
_IDEMPOTENT_RESTORE = (KubernetesMethod, OllamaMethod, VllmSleepMethod, HttpMethod)


@dataclass
class Keeper:
    config: Config
    backend: GpuBackend
    journal: Journal
    log_dir: Path
    clock: Clock
    poll: float
    promised: Callable[[str], int]  # bytes promised to started jobs on a GPU (by name)
    claim: GpuClaim | None = None  # held on a GPU while tenants on it are released

    def __post_init__(self) -> None:
        # A claim taken for a release is journaled (the intent) before anyone settles the
        # claims from the journal: else a settle in between would let the new claim go.
        self._claiming = threading.Lock()

    def settle_claim(self) -> None:
        """Tell the claim which GPUs have tenants released now (after a restore; and renewed
        from the Kubernetes mode's thread)."""
        if self.claim is None:
            return
        with self._claiming:
            released: set[GpuName | None] = set()
            for row in self.journal.releases(open_only=True):
                plan = self._plan(row)
                released.add(plan.tenant.gpu if plan is not None else None)
            self.claim.settle(released)

    def held(self, tenant: TenantName, spec: TenantSpec) -> int:
        """What its processes hold now, found by its declaration (the journaled one for a
        tenant no longer in the config)."""
        return self._held_now(tenant, spec).bytes

    def _held_now(self, tenant: TenantName, spec: TenantSpec) -> Held:
        """A fresh reading of the tenant's processes, found by `spec` (its journaled
        declaration when it is no longer, or differently, in the config)."""
        config = self.config
        if config.tenants.get(tenant) != spec:
            config = config.model_copy(update={"tenants": {**config.tenants, tenant: spec}})
        return held_by_tenant(self.backend.snapshot(), config).get(tenant, NOTHING)

    def _wait_held(
        self, tenant: TenantName, spec: TenantSpec, ok: Callable[[int], bool], timeout: float
    ) -> bool:
        return wait_until(
            lambda: ok(self.held(tenant, spec)), timeout=timeout, poll=self.poll, clock=self.clock
        )

    def _context(
        self,
        tenant: str,
        pids: tuple[int, ...],
        timeout: float,
        *,
        env: dict[str, str] | None = None,
        identities: dict[int, int | None] | None = None,
        match: Match | None = None,
    ) -> ActContext:
        return ActContext(
            pod_ips=pod_addresses(match.pod if match is not None else None),
            identities=identities,
            tenant=tenant,
            pids=pids,
            log_dir=self.log_dir,
            timeout=timeout,
            env=env or {},
            backend=self.backend,
            state_dir=self.log_dir.parent,
        )

    def _identities(
        self, tenant: TenantName, spec: TenantSpec, held: Held
    ) -> dict[int, int | None]:
        """The tenant's processes as they are now: attributed again (its `match` re-checked),
        each with its start time, so an actuator never signals a pid that changed hands."""
        now = self._held_now(tenant, spec)
        return {pid: start_ticks(pid) for pid in held.pids if pid in now.pids}

    # --- release ------------------------------------------------------------------------------

    def plan_for(self, spec: TenantSpec, index: int) -> RestorePlan:
        return RestorePlan(tenant=spec, index=index)

    def release(self, job_id: JobId, tenant: TenantName, held: Held) -> bool:
        """Try the tenant's methods in order until the backend shows its memory gone."""
        spec = self.config.tenants[tenant]
        for index, method in enumerate(spec.preempt):
            try:
                actuator = actuator_for(method)
            except UnsupportedMethod as exc:
                self.journal.record("release_skipped", str(exc), job_id=job_id, tenant=tenant)
                continue
            plan = self.plan_for(spec, index)
            with self._claiming:
                why = self.claim.hold(spec.gpu) if self.claim is not None else None
                if why is not None:  # another broker holds the GPU: nothing is touched
                    self.journal.record("release_refused", why, job_id=job_id, tenant=tenant)
                    return False
                release_id = self.journal.release_intent(job_id, tenant, plan)
            crash_point("after_intent")
            # The kubernetes method names the job in its annotations.
            ctx = self._context(
                tenant,
                held.pids,
                spec.release_timeout,
                env={"GPUHERD_RELEASE_FOR": job_id},
                identities=self._identities(tenant, spec, held),
                match=spec.match,
            )
            try:
                detail: dict[str, Any] | None = actuator.release(ctx)
            except ActuatorError as exc:
                self.journal.record("release_failed", str(exc), job_id=job_id, tenant=tenant)
                detail = None
            if detail is not None and self._wait_held(
                tenant, spec, lambda b: b == 0, spec.release_timeout
            ):
                self.journal.mark_released(release_id, detail={**detail, "held": held.bytes})
                crash_point("after_release")
                return True
            # Not freed: restore what this attempt may have half done, then try the next method.
            self.journal.restore_intent(release_id)
            row = next(r for r in self.journal.releases(job_id=job_id) if r.id == release_id)
            self._restore_one(row)
        return False

    # --- restore ------------------------------------------------------------------------------

    def restore_job(self, job_id: JobId) -> None:
        """A job's tenants, in reverse release order (pending_restores is newest first)."""
        done = 0
        for release in self.journal.pending_restores():
            if release.job_id != job_id:
                continue
            if done:
                crash_point("mid_restore")
            self.restore(release)
            done += 1

    def restore(self, release: ReleaseRow) -> bool:
        self.journal.restore_intent(release.id)
        return self._restore_one(release)

    def retry_failed(self, *, skip: set[JobId]) -> int:
        """Failed restores of jobs no longer running, retried with capped exponential backoff
        (never dropped: a tenant left down is the 4 AM failure this tool exists to prevent)."""
        broker, now, tried = self.config.broker, self.clock.now(), 0
        for release in self.journal.pending_restores():
            if (
                release.state is not ReleaseState.RESTORE_FAILED
                or release.job_id in skip
                or is_guard_job(release.job_id)  # the guard restores its own when there is room
            ):
                continue
            wait = min(broker.restore_retry_max, broker.restore_retry * 2 ** (release.attempts - 1))
            if now < (release.failed_at or 0) + wait:
                continue
            self.restore(release)
            tried += 1
        return tried

    def _plan(self, release: ReleaseRow) -> RestorePlan | None:
        if release.plan is not None:
            return release.plan
        # Journaled before plans existed: the config's method of that kind, if still there.
        spec = self.config.tenants.get(release.tenant)
        if spec is None:
            return None
        index = next((i for i, m in enumerate(spec.preempt) if m.kind == release.method), None)
        return None if index is None else self.plan_for(spec, index)

    def _restore_one(self, release: ReleaseRow) -> bool:
        plan = self._plan(release)
        if plan is None:
            why: str | None = f"no {release.method} method to restore it with"
        else:
            why = self._try_restore(release, plan)
        if why is not None:
            self.journal.mark_restore_failed(release.id, why)
            return False
        gone = release.tenant not in self.config.tenants
        self.journal.mark_restored(
            release.id, note="no longer in the config; restored from the journal" if gone else None
        )
        self.settle_claim()  # the last tenant on its GPU back: the claim goes
        return True

    def _try_restore(self, release: ReleaseRow, plan: RestorePlan) -> str | None:
        """Restore with the method that released it and verify; None on success, else why."""
        spec, tenant = plan.tenant, release.tenant
        # A scale or an unload is undone by doing it again, whatever the GPU shows now: pods
        # still terminating hold memory for a while and would never come back by themselves.
        undo_anyway = isinstance(plan.method, _IDEMPOTENT_RESTORE)
        holding = self.held(tenant, spec) > 0
        if holding and not undo_anyway:
            # Trust the hardware: it holds memory, so it runs (a crash hit between the intent
            # and the release, or it came back by itself). Restoring would start it twice;
            # only its health check, if it has one, may still say no.
            why = None if spec.health is None else probe(spec.health, timeout=10.0)
            return None if why is None else f"health check: {why}"
        expected = int(release.detail.get("held", 1) or 0)
        wait = min(spec.restore_timeout, _ROOM_WAIT)
        # A method that may put the tenant on another GPU checks the room where it lands.
        movable = isinstance(plan.method, CheckpointMethod) and plan.method.move
        # One that still holds its memory needs no room to be undone (a model reloaded where
        # it never left, a scale back over pods still there).
        short = None if movable or holding else self._room_short(spec.gpu, expected, timeout=wait)
        if short is not None:
            # Do not even try: a model load would OOM and a cuda-checkpoint restore without
            # room fails for good. Retried with backoff once the memory is back.
            return short
        ctx = self._context(tenant, (), spec.restore_timeout, match=spec.match)
        deadline = self.clock.monotonic() + spec.restore_timeout
        started = release.detail.get("restore_started")
        if started and start_ticks(int(started["pid"])) == started["ticks"] is not None:
            # A start from before a crash is still loading (it holds no memory yet): wait for
            # it, never start a second copy.
            self.journal.record(
                "restore_adopted",
                f"start {started['pid']} still loading",
                job_id=release.job_id,
                tenant=tenant,
            )
        else:
            try:
                facts = actuator_for(plan.method).restore(ctx, release.detail)
            except (ActuatorError, UnsupportedMethod) as exc:
                return str(exc)
            if isinstance(facts.get("pid"), int):  # journaled before waiting for it
                ticks = start_ticks(facts["pid"])
                self.journal.add_detail(
                    release.id, {"restore_started": {"pid": facts["pid"], "ticks": ticks}}
                )
                crash_point("restore_started")
        back = self._wait_held(tenant, spec, lambda b: b > 0, spec.restore_timeout)
        if expected and not back:
            return "its memory did not come back in time"
        if spec.health is not None:  # memory alone does not prove it serves
            left = max(deadline - self.clock.monotonic(), 1.0)
            why = wait_healthy(spec.health, left, poll=min(self.poll * 5, 0.5))
            if why is not None:
                return f"health check: {why}"
        return None

    def _room_short(self, gpu_name: str | None, need: int, *, timeout: float) -> str | None:
        """None once `need` bytes are free on the GPU beyond what started jobs were promised
        (a job admitted but not yet allocated must not lose its room to a restore), else why."""
        gpu = self.config.gpu(gpu_name or "")
        seen: list[int] = []

        def room() -> bool:
            dev = device_for(gpu, self.backend.snapshot())
            if dev is None:
                return True
            free = dev.memory_free - self.promised(gpu_name or "")
            seen.append(free)
            return free >= need

        if wait_until(room, timeout=timeout, poll=self.poll, clock=self.clock):
            return None
        return (
            f"needs {format_bytes(need)} free on {gpu_name}, {format_bytes(max(seen[-1], 0))} free"
        )
