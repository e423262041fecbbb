"""Pure scheduling: (GPUs, tenants, queued jobs, now) -> decisions. No I/O, no clock, no sleep.

For each queued job, by priority then FIFO: admit it when free VRAM (minus what earlier
decisions in this round promised) covers it; else choose victims among running, preemptible,
lower-priority tenants on its GPU (not in cooldown, allowing the job's timeout as downtime) whose
measured VRAM covers the deficit, minimising (highest victim priority, number of victims,
expected restore time); else the job waits with a reason a person can act on. A job never
overtakes an earlier waiting job on the same GPU, so nobody starves.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

from gpuherd.ids import GpuName, JobId, TenantName
from gpuherd.units import format_bytes

__all__ = [
    "Admit",
    "Decision",
    "GpuState",
    "JobRequest",
    "Preempt",
    "TenantState",
    "Wait",
    "schedule",
]

_EXACT_LIMIT = 14  # candidates up to which the victim set is searched exhaustively


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuState:
    name: GpuName
    free: int  # bytes free now (backend reading minus reserve)
    promised: int = 0  # bytes promised to jobs that are starting


@dataclass(frozen=True, slots=True, kw_only=True)
class TenantState:
    name: TenantName
    gpu: GpuName
    priority: int
    preemptible: bool
    held: int  # bytes its processes hold now (measured, not declared)
    state: str = "running"  # running | releasing | released | restoring | failed
    max_downtime: float | None = None
    cooldown_until: float | None = None
    restore_cost: float = 0.0  # expected seconds to restore


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRequest:
    id: JobId
    gpu: GpuName
    vram: int
    priority: int
    timeout: float
    submitted_at: float
    not_before: float | None = None


@dataclass(frozen=True, slots=True)
class Admit:
    job: JobId
    gpu: GpuName


@dataclass(frozen=True, slots=True)
class Preempt:
    job: JobId
    gpu: GpuName
    victims: tuple[TenantName, ...]


@dataclass(frozen=True, slots=True)
class Wait:
    job: JobId
    reason: str


Decision = Admit | Preempt | Wait


def _excluded(t: TenantState, job: JobRequest, now: float) -> str | None:
    """Why `t` cannot be released for `job`, or None when it can (first reason that applies)."""
    checks = (
        (t.state != "running", f"{t.name} is {t.state}"),
        (not t.preemptible, f"{t.name} (priority {t.priority}) not preemptible"),
        (
            t.priority >= job.priority,
            f"{t.name} (priority {t.priority}) not below the job's {job.priority}",
        ),
        (
            t.max_downtime is not None and t.max_downtime < job.timeout,
            f"{t.name} allows {t.max_downtime}s down, the job may run {job.timeout:g}s",
        ),
        (
            t.cooldown_until is not None and t.cooldown_until > now,
            f"{t.name} in cooldown for {(t.cooldown_until or now) - now:.0f}s",
        ),
        (t.held <= 0, f"{t.name} holds no VRAM"),
    )
    return next((reason for failed, reason in checks if failed), None)


def _key(victims: tuple[TenantState, ...]) -> tuple[int, int, float]:
    return (max(v.priority for v in victims), len(victims), sum(v.restore_cost for v in victims))


def choose_victims(candidates: list[TenantState], deficit: int) -> tuple[TenantState, ...] | None:
    """The best set whose held VRAM covers `deficit` (see module doc), or None."""
    if sum(c.held for c in candidates) < deficit:
        return None
    for threshold in sorted({c.priority for c in candidates}):
        pool = sorted(
            (c for c in candidates if c.priority <= threshold),
            key=lambda c: (-c.held, c.restore_cost, c.name),
        )
        # The k largest holders have the largest sum of any k tenants: the fewest victims.
        total, fewest = 0, 0
        for c in pool:
            total += c.held
            fewest += 1
            if total >= deficit:
                break
        else:
            continue
        if len(pool) <= _EXACT_LIMIT:
            sets = [s for s in combinations(pool, fewest) if sum(v.held for v in s) >= deficit]
            return min(sets, key=lambda s: (_key(s), tuple(v.name for v in s)))
        return tuple(pool[:fewest])
    return None


def schedule(
    *,
    gpus: list[GpuState],
    tenants: list[TenantState],
    queue: list[JobRequest],
    now: float,
) -> list[Decision]:
    free = {g.name: g.free - g.promised for g in gpus}
    taken: set[str] = set()
    blocked: dict[str, str] = {}  # gpu -> job waiting there first
    decisions: list[Decision] = []
    for job in sorted(queue, key=lambda j: (-j.priority, j.submitted_at, j.id)):
        if job.not_before is not None and job.not_before > now:
            decisions.append(Wait(job.id, f"not before {job.not_before - now:.0f}s from now"))
            continue
        if job.gpu not in free:
            decisions.append(Wait(job.id, f"no GPU named {job.gpu}"))
            continue
        if job.gpu in blocked:
            decisions.append(Wait(job.id, f"queued behind {blocked[job.gpu]} on {job.gpu}"))
            continue
        available = free[job.gpu]
        if job.vram <= available:
            free[job.gpu] -= job.vram
            decisions.append(Admit(job.id, job.gpu))
            continue
        deficit = job.vram - available
        on_gpu = [t for t in tenants if t.gpu == job.gpu and t.name not in taken]
        reasons = {t.name: _excluded(t, job, now) for t in on_gpu}
        candidates = [t for t in on_gpu if reasons[t.name] is None]
        victims = choose_victims(candidates, deficit)
        if victims is None:
            why = [r for r in reasons.values() if r is not None]
            if candidates:
                why.insert(
                    0,
                    f"releasing every candidate frees "
                    f"{format_bytes(sum(c.held for c in candidates))}",
                )
            decisions.append(
                Wait(
                    job.id,
                    f"needs {format_bytes(job.vram)}, "
                    f"{format_bytes(max(available, 0))} free"
                    + (f"; {'; '.join(why)}" if why else ""),
                )
            )
            blocked[job.gpu] = job.id
            continue
        taken.update(v.name for v in victims)
        free[job.gpu] = available + sum(v.held for v in victims) - job.vram
        decisions.append(Preempt(job.id, job.gpu, tuple(v.name for v in victims)))
    return decisions
