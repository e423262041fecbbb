"""The headroom guard at work: at each engine step, for every GPU with a `guard`, read its room,
its tenants and their idleness, ask `guard.decide`, and release or restore through the keeper.

Releases go under the GPU's guard row in the journal (`guard-<gpu>`), with the same intent,
verification on the GPU and restore plan as a job's, so a guard release counts as a release for
status and metrics and survives a crash: recovery leaves these rows to the guard, which brings
each tenant back once its room is there. Idleness is read from per-process GPU utilization
where the backend reports it, else from the tenant's declared `idle` probe; a tenant whose
idleness nobody can tell is never released as idle. Only the timers live in memory: after a
restart the pressure and the room are measured again from scratch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from gpuherd.actuators.health import probe
from gpuherd.broker.accounting import NOTHING, Held, device_for, held_by_tenant, tenant_states
from gpuherd.broker.clock import Clock
from gpuherd.broker.guard import (
    GuardGpu,
    GuardTenant,
    Release,
    Released,
    Restore,
    decide,
    guard_job_id,
    required_free,
    watch_lines,
)
from gpuherd.broker.journal import Journal
from gpuherd.broker.keeper import Keeper
from gpuherd.broker.records import ReleaseRow
from gpuherd.broker.scheduler import TenantState
from gpuherd.gpu.base import GpuSnapshot
from gpuherd.ids import GpuName, TenantName
from gpuherd.spec.model import Config, GpuSpec, GuardSpec, TenantSpec

_HOUR = 3600.0
_PROBE_TIMEOUT = 2.0
_WAKE_MARGIN = 0.002


@dataclass
class _Timers:
    low_since: float | None = None
    room_since: float | None = None
    room_for: TenantName | None = None
    stuck: str | None = None  # the last "cannot make room" reported, once per episode
    flapping: bool = False
    wake_at: float | None = None  # a step asked for then
    wake: threading.Timer | None = None


def flapping(
    releases: list[ReleaseRow], spec: GuardSpec, now: float
) -> tuple[int, list[TenantName]]:
    """Guard releases in the last hour, and the tenants they hit when that is more than the
    GPU allows (else no tenants)."""
    recent = [r for r in releases if r.created_at >= now - _HOUR]
    tenants = sorted({r.tenant for r in recent}) if len(recent) > spec.flaps_per_hour else []
    return len(recent), tenants


@dataclass(frozen=True, slots=True)
class Watch:
    """What the last step saw of one guarded device: its free memory, and the readings of free
    memory at which the guard would decide otherwise (device terms: the reserve included)."""

    seen: int
    lines: tuple[int, ...]

    def crossed(self, free: int) -> bool:
        return any((free >= line) != (self.seen >= line) for line in self.lines)


@dataclass
class Guarding:
    config: Config
    journal: Journal
    keeper: Keeper
    clock: Clock
    promised: Callable[[str], int]  # bytes promised to started jobs on a GPU (by name)
    # Wakes the loop for a step now: the guard asks for one the moment `for` or
    # `restore_after` runs out, rather than up to a poll later.
    notify: Callable[[], None] | None = None
    _timers: dict[GpuName, _Timers] = field(default_factory=dict)
    _rows: set[str] = field(default_factory=set)  # guard rows known to be in the journal
    # By device index, for the pressure sampler's thread (a whole dict swapped in each step).
    watch: dict[int, Watch] = field(default_factory=dict)

    @property
    def guarded(self) -> list[GpuSpec]:
        return [g for g in self.config.gpus or [] if g.guard is not None]

    def step(self, snap: GpuSnapshot) -> bool:
        """One look at every guarded GPU; True when it released or restored (the reading is
        stale then)."""
        guarded = self.guarded
        if not guarded:
            return False
        held = held_by_tenant(snap, self.config)
        states = tenant_states(self.config, self.journal, held)
        acted = False
        watching: dict[int, Watch] = {}  # swapped in whole at the end
        for gpu in guarded:
            try:
                acted = self._step_gpu(gpu, snap, held, states, watching) or acted
            except Exception as exc:  # one GPU's failure never stops the others, nor the jobs
                self.journal.record(
                    "guard_error",
                    f"guard on {gpu.name}: {type(exc).__name__}: {exc}",
                    job_id=guard_job_id(gpu.name),
                )
        self.watch = watching
        return acted

    def _step_gpu(
        self,
        gpu: GpuSpec,
        snap: GpuSnapshot,
        held: dict[TenantName, Held],
        states: list[TenantState],
        watching: dict[int, Watch],
    ) -> bool:
        spec = gpu.guard
        dev = device_for(gpu, snap)
        if spec is None or dev is None:
            return False
        now = self.clock.now()
        timers = self._timers.setdefault(gpu.name, _Timers())
        mine = [s for s in states if s.gpu == gpu.name]
        room = GuardGpu(
            name=gpu.name,
            free=dev.memory_free - gpu.reserve,
            promised=self.promised(gpu.name),
            spec=spec,
            low_since=timers.low_since,
            room_since=timers.room_since,
            room_for=timers.room_for,
        )
        # Idleness costs a probe: asked only when a release is due.
        cheap = [self._tenant(s, idle=False) for s in mine]
        due = (
            room.free - room.promised < required_free(spec, cheap)
            and timers.low_since is not None
            and now - timers.low_since >= spec.for_
        )
        tenants = [self._tenant(s, idle=self._idle(s, held, snap)) for s in mine] if due else cheap
        gid = guard_job_id(gpu.name)
        open_rows = self.journal.releases(job_id=gid, open_only=True) if _any_released(mine) else []
        back = [r for r in open_rows if held.get(r.tenant, NOTHING).bytes > 0]
        if back:
            # Back by itself (Ollama loads a model on the next request), or a crash hit between
            # the intent and the release: it runs, so its release is over. The keeper trusts
            # the hardware here and only records it.
            for row in back:
                why = "holds memory again: released no longer"
                self.journal.record("guard_restore", why, job_id=gid, tenant=row.tenant)
                self.keeper.restore(row)
            return True
        released = [_released(r) for r in open_rows]
        out = decide(room, tenants, released, now)
        lines = watch_lines(room, tenants, released, now)
        watching[dev.index] = Watch(dev.memory_free, tuple(x + gpu.reserve for x in lines))
        timers.low_since, timers.room_since, timers.room_for = (
            out.low_since,
            out.room_since,
            out.room_for,
        )
        if out.low_since is None:
            timers.stuck = None
        elif out.action is None:
            self._wake_at(timers, out.low_since + spec.for_, now)
        if out.room_since is not None:
            self._wake_at(timers, out.room_since + spec.restore_after, now)
        match out.action:
            case Release():
                self._release(gpu, spec, out.action, out.why, held)
                return True
            case Restore(tenant=tenant):
                row = next(r for r in reversed(open_rows) if r.tenant == tenant)
                self.journal.record("guard_restore", out.why, job_id=gid, tenant=tenant)
                self.keeper.restore(row)
                return True
        if due and timers.stuck != out.why:
            timers.stuck = out.why
            self.journal.record("guard_stuck", f"{gpu.name}: {out.why}", job_id=gid)
        return False

    def _wake_at(self, timers: _Timers, when: float, now: float) -> None:
        pending = timers.wake is not None and timers.wake.is_alive()
        if self.notify is None or (pending and timers.wake_at == when):
            return
        timers.wake_at = when
        # A hair late rather than early: a step just before `when` would wait a whole poll.
        timers.wake = threading.Timer(max(when - now, 0.0) + _WAKE_MARGIN, self.notify)
        timers.wake.daemon = True
        timers.wake.start()

    def _tenant(self, state: TenantState, *, idle: bool) -> GuardTenant:
        spec = self.config.tenants.get(state.name)
        return GuardTenant(state=state, idle=idle, headroom=spec.headroom if spec else 0)

    def _idle(self, state: TenantState, held: dict[TenantName, Held], snap: GpuSnapshot) -> bool:
        pids = held.get(state.name, NOTHING).pids
        return is_idle(self.config.tenants.get(state.name), pids, snap)

    def _release(
        self,
        gpu: GpuSpec,
        spec: GuardSpec,
        action: Release,
        why: str,
        held: dict[TenantName, Held],
    ) -> None:
        gid = guard_job_id(gpu.name)
        if gid not in self._rows:  # once per broker: an insert is an fsync
            self.journal.guard_job(gid)
            self._rows.add(gid)
        self.journal.record("guard_release", f"{gpu.name}: {why}", job_id=gid)
        for victim in action.victims:
            if not self.keeper.release(gid, victim, held.get(victim, NOTHING)):
                self.journal.record(
                    "guard_release_failed",
                    f"could not release {victim} for {action.protects}",
                    job_id=gid,
                    tenant=victim,
                )
        self._check_flapping(gpu, spec)

    def _check_flapping(self, gpu: GpuSpec, spec: GuardSpec) -> None:
        gid = guard_job_id(gpu.name)
        timers = self._timers.setdefault(gpu.name, _Timers())
        count, tenants = flapping(self.journal.releases(job_id=gid), spec, self.clock.now())
        if tenants and not timers.flapping:
            self.journal.record(
                "guard_flapping",
                f"{gpu.name} flaps: {count} guard releases in the last hour "
                f"(more than {spec.flaps_per_hour}), of {', '.join(tenants)}",
                job_id=gid,
            )
        timers.flapping = bool(tenants)


def is_idle(spec: TenantSpec | None, pids: tuple[int, ...], snap: GpuSnapshot) -> bool:
    """No GPU work in flight: every process of it at 0 % where the driver reports per-process
    utilization, else its `idle` probe passes; False when nobody can tell."""
    utils = [p.utilization for p in snap.processes if p.pid in set(pids)]
    if utils and all(u is not None for u in utils):
        return not any(utils)
    if spec is None or spec.idle is None:
        return False
    return probe(spec.idle, timeout=_PROBE_TIMEOUT) is None


def _any_released(states: list[TenantState]) -> bool:
    return any(s.state == "released" for s in states)


def _released(row: ReleaseRow) -> Released:
    plan = row.plan
    return Released(
        name=row.tenant,
        priority=plan.tenant.priority if plan else 0,
        size=int(row.detail.get("held", 0) or 0),
        released_at=row.released_at or row.created_at,
        cooldown=plan.tenant.cooldown if plan else 0.0,
    )
