"""The headroom guard's decisions, pure: (one GPU's room, its tenants, what the guard holds
released, timers, now) -> release these, restore that, or nothing and why. No I/O, no clock.

A GPU is under pressure while its free memory (minus what started jobs were promised) is below
what the guard keeps free: `min_free`, or the sum of the `headroom` of its active tenants when
that is more. Once the pressure has lasted `for`, the room is asked of the job scheduler as a job
would ask it: a request for the missing bytes at the priority of the most important active
tenant on the GPU, so jobs and the guard share one order of who yields to whom. Busy tenants
are shown to it as not running, so only idle, preemptible, lower-priority tenants past their
cooldown are released, and among those the set whose highest priority is lowest (then the
fewest, then the cheapest to restore).

Restore is the reverse, one tenant at a time: the highest-priority tenant the guard released,
past its cooldown, once the free memory has stayed at least its size + `min_free` +
`restore_above` for `restore_after`, and never while a started job is still owed room.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from gpuherd.broker.scheduler import GpuState, JobRequest, Preempt, TenantState, Wait, schedule
from gpuherd.ids import GpuName, JobId, TenantName
from gpuherd.spec.model import GuardSpec
from gpuherd.units import format_bytes

__all__ = [
    "GUARD_JOB_PREFIX",
    "GuardGpu",
    "GuardTenant",
    "Outcome",
    "Release",
    "Released",
    "Restore",
    "decide",
    "guard_job_id",
    "is_guard_job",
    "required_free",
    "watch_lines",
]

# Job ids are 12 hex digits: a row named this way is never a job.
GUARD_JOB_PREFIX = "guard-"


def guard_job_id(gpu: str) -> JobId:
    """The journal row a GPU's guard releases tenants under."""
    return JobId(f"{GUARD_JOB_PREFIX}{gpu}")


def is_guard_job(job_id: str) -> bool:
    return job_id.startswith(GUARD_JOB_PREFIX)


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardGpu:
    name: GpuName
    free: int  # bytes free now, minus the GPU's reserve
    promised: int  # bytes started jobs were promised and have not allocated yet
    spec: GuardSpec
    low_since: float | None = None  # when the pressure began (None: no pressure)
    room_since: float | None = None  # since when `room_for` has had room to come back
    room_for: TenantName | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardTenant:
    state: TenantState  # as the job scheduler sees it
    idle: bool  # no GPU work in flight (utilization 0, or its `idle` probe passes)
    headroom: int = 0  # its burst, kept free while it is active

    @property
    def active(self) -> bool:
        return self.state.state == "running" and self.state.held > 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Released:
    """A tenant the guard holds released."""

    name: TenantName
    priority: int
    size: int  # what it held when released: the room it needs back
    released_at: float
    cooldown: float


@dataclass(frozen=True, slots=True)
class Release:
    victims: tuple[TenantName, ...]
    need: int  # bytes missing
    priority: int  # of the tenant the room is for
    protects: TenantName


@dataclass(frozen=True, slots=True)
class Restore:
    tenant: TenantName


Action = Release | Restore | None


@dataclass(frozen=True, slots=True)
class Outcome:
    action: Action
    why: str  # what a person reads in status when nothing happens
    low_since: float | None
    room_since: float | None
    room_for: TenantName | None


def required_free(spec: GuardSpec, tenants: list[GuardTenant]) -> int:
    """What the guard keeps free: `min_free`, or the active tenants' bursts when more."""
    return max(spec.min_free, sum(t.headroom for t in tenants if t.active))


def _release(
    gpu: GuardGpu, tenants: list[GuardTenant], need: int, now: float
) -> tuple[Release | None, str]:
    active = [t for t in tenants if t.active]
    if not active:
        return None, "no active tenant to keep room for"
    top = max(active, key=lambda t: (t.state.priority, t.state.name))
    request = JobRequest(
        id=guard_job_id(gpu.name),
        gpu=gpu.name,
        vram=need,
        priority=top.state.priority,
        timeout=gpu.spec.restore_after,  # the least it will stay down
        submitted_at=0.0,
    )
    shown = [t.state if t.idle else dataclasses.replace(t.state, state="busy") for t in tenants]
    room = GpuState(name=gpu.name, free=gpu.free, promised=gpu.promised)
    (decision,) = schedule(gpus=[room], tenants=shown, queue=[request], now=now)
    if isinstance(decision, Preempt):
        deficit = need - (gpu.free - gpu.promised)
        release = Release(decision.victims, deficit, request.priority, top.state.name)
        return release, f"releasing {', '.join(decision.victims)} for {top.state.name}"
    if isinstance(decision, Wait):
        return None, f"cannot make room for {top.state.name}: {decision.reason}"
    return None, "room enough"  # Admit: the reading changed between the checks


def decide(
    gpu: GuardGpu, tenants: list[GuardTenant], released: list[Released], now: float
) -> Outcome:
    free = gpu.free - gpu.promised
    required = required_free(gpu.spec, tenants)
    if free < required:
        low_since = now if gpu.low_since is None else gpu.low_since
        short = f"{format_bytes(max(free, 0))} free, the guard keeps {format_bytes(required)}"
        if now - low_since < gpu.spec.for_:
            return Outcome(None, f"{short} (for {now - low_since:.1f}s)", low_since, None, None)
        action, why = _release(gpu, tenants, required, now)
        # After a release the pressure starts over: the next one waits its own `for`.
        return Outcome(action, f"{short}; {why}", None if action else low_since, None, None)
    return _restore(gpu, required, released, now)


def _first_in_line(released: list[Released], now: float) -> Released | None:
    """The released tenant to come back next: the highest priority past its cooldown."""
    due = [r for r in released if now >= r.released_at + r.cooldown]
    return max(due, key=lambda r: (r.priority, r.name)) if due else None


def _restore(gpu: GuardGpu, required: int, released: list[Released], now: float) -> Outcome:
    free = gpu.free - gpu.promised
    if not released:
        return Outcome(None, "headroom kept", None, None, None)
    if gpu.promised > 0:
        return Outcome(None, "a started job is owed room on this GPU", None, None, None)
    best = _first_in_line(released, now)
    if best is None:
        first = min(r.released_at + r.cooldown for r in released)
        return Outcome(
            None, f"released tenants in cooldown for {first - now:.0f}s", None, None, None
        )
    needs = best.size + required + gpu.spec.restore_above
    if free < needs:
        why = (
            f"{best.name} needs {format_bytes(needs)} free to come back, {format_bytes(free)} free"
        )
        return Outcome(None, why, None, None, None)
    since = gpu.room_since if gpu.room_for == best.name and gpu.room_since is not None else now
    if now - since < gpu.spec.restore_after:
        why = f"room for {best.name} for {now - since:.1f}s of {gpu.spec.restore_after:g}s"
        return Outcome(None, why, None, since, best.name)
    return Outcome(Restore(best.name), f"restoring {best.name}", None, None, None)


def watch_lines(
    gpu: GuardGpu, tenants: list[GuardTenant], released: list[Released], now: float
) -> tuple[int, ...]:
    """The free-memory readings (in `gpu.free`'s terms) at which `decide` could change its mind:
    the pressure line, and the line above which the released tenant first in line may come
    back. Between steps, free memory crossing one of them is worth a step now; moving on one
    side of them is not."""
    required = required_free(gpu.spec, tenants)
    lines = [required + gpu.promised]
    best = _first_in_line(released, now)
    if best is not None:
        lines.append(best.size + required + gpu.spec.restore_above + gpu.promised)
    return tuple(lines)
