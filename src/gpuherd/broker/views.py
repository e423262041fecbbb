"""Read models for the outside: frozen views of jobs, tenants, GPUs and events, built here and
only here. The HTTP API, the metrics collector and the CLI's JSON read these, never the
engine's own state or the journal's rows."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from gpuherd.broker.accounting import held_by_tenant
from gpuherd.broker.guard import guard_job_id, is_guard_job
from gpuherd.broker.journal import Journal
from gpuherd.broker.records import EventRow, JobRow, ReleaseRow
from gpuherd.broker.states import (
    OPEN_RELEASE_STATES,
    TENANT_STATE_OF_RELEASE,
    JobState,
    TenantState,
)
from gpuherd.spec.model import Config, KubernetesMethod, TenantSpec


@dataclass(frozen=True, slots=True)
class ReleaseView:
    tenant: str
    method: str | None
    state: str
    released_at: float | None
    restored_at: float | None
    down_s: float | None


@dataclass(frozen=True, slots=True)
class JobView:
    id: str
    name: str
    state: JobState
    reason: str | None
    submitted_at: float
    started_at: float | None
    ended_at: float | None
    pid: int | None
    exit_code: int | None
    vram_used: int | None
    adhoc: bool
    result: dict[str, Any] | None
    releases: tuple[ReleaseView, ...] | None = None  # only for a single job's view
    owner_uid: int | None = None  # the submitter's uid over the unix socket; None otherwise

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.releases is None:
            del data["releases"]
        return data


@dataclass(frozen=True, slots=True)
class TenantView:
    name: str
    state: TenantState
    gpu: str | None
    held: int | None  # bytes its processes hold, at the last step (None before the first)
    host_ram: int = 0  # bytes a `checkpoint` release moved to host RAM, while released
    workload: str | None = None  # Kind/namespace/name of the Kubernetes workload it scales
    workload_state: str | None = None  # that workload as the broker's watch last saw it


@dataclass(frozen=True, slots=True)
class GpuView:
    index: int
    name: str
    uuid: str
    total: int
    used: int
    free: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "uuid": self.uuid,
            "memory": {"total": self.total, "used": self.used, "free": self.free},
        }


@dataclass(frozen=True, slots=True)
class EngineHealth:
    """Whether the engine loop steps: `error` is the last step's failure, if it failed."""

    ok: bool = True
    error: str | None = None
    errors_total: int = 0
    retry_in: float | None = None


@dataclass(frozen=True, slots=True)
class GuardView:
    """A GPU's headroom guard: what it keeps free, whom it holds released, and whether it flaps
    (more guard releases in the last hour than `flaps_per_hour`, with the tenants they hit)."""

    gpu: str
    min_free: int
    released: tuple[str, ...]
    releases_last_hour: int
    flaps_per_hour: int
    flapping: tuple[str, ...]  # the tenants, while it flaps


@dataclass(frozen=True, slots=True)
class StatusView:
    gpus: tuple[GpuView, ...]
    tenants: tuple[TenantView, ...]
    jobs: tuple[JobView, ...]
    engine: EngineHealth
    guard: tuple[GuardView, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "gpus": [g.to_dict() for g in self.gpus],
            "tenants": [asdict(t) for t in self.tenants],
            "jobs": [j.to_dict() for j in self.jobs],
            "engine": asdict(self.engine),
            "guard": [asdict(g) for g in self.guard],
        }


@dataclass(frozen=True, slots=True)
class EventView:
    id: int
    at: float
    kind: str
    job: str | None
    tenant: str | None
    message: str


def _span(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else end - start


def release_view(r: ReleaseRow) -> ReleaseView:
    return ReleaseView(
        r.tenant,
        r.method,
        str(r.state),
        r.released_at,
        r.restored_at,
        _span(r.released_at, r.restored_at),
    )


def _workload_of(tenant: TenantSpec) -> tuple[str, str, str] | None:
    """(kind, namespace, name) of the workload its `kubernetes` method scales, if it has one."""
    method = next((m for m in tenant.preempt if isinstance(m, KubernetesMethod)), None)
    return None if method is None else (method.kind_, method.namespace, method.name)


def _workload_state(kind: str, namespace: str, name: str) -> str | None:
    """Replicas, readiness and who released it, from the Kubernetes mode's watch (no request);
    None outside that mode. A `kubernetes` method exists only in it, with its client installed."""
    try:
        from gpuherd.k8s.session import RELEASED_BY, RESTORE_REPLICAS, current
    except ImportError:  # no kubernetes client: no Kubernetes mode
        return None
    session = current()
    if session is None:
        return None
    workload = session.workload(kind, namespace, name)
    if workload is None:
        return "not found" if kind in session.workloads else None
    notes = workload["metadata"].get("annotations") or {}
    replicas = int((workload.get("spec") or {}).get("replicas") or 0)
    ready = int((workload.get("status") or {}).get("readyReplicas") or 0)
    if RELEASED_BY in notes:
        back = notes.get(RESTORE_REPLICAS, "?")
        return f"released by {notes[RELEASED_BY]}: {ready}/{replicas} ready, restores to {back}"
    return f"{ready}/{replicas} ready"


def event_view(e: EventRow) -> EventView:
    return EventView(e.id, e.at, e.kind, e.job_id, e.tenant, e.message)


class Views:
    """Built from the journal (through this thread's read connection) and what the engine
    published at its last step (`published`: waiting reasons, job VRAM, the GPU reading)."""

    def __init__(
        self,
        *,
        config: Config,
        journal: Journal,
        published: Callable[[], Any],
        health: Callable[[], EngineHealth],
    ) -> None:
        self.config = config
        self.journal = journal
        self._published = published
        self._health = health

    def _job(self, row: JobRow, *, releases: bool = False) -> JobView:
        pub = self._published()
        return JobView(
            id=row.id,
            name=row.name,
            state=row.state,
            reason=pub.waiting.get(row.id, row.reason),
            submitted_at=row.submitted_at,
            started_at=row.started_at,
            ended_at=row.ended_at,
            pid=None if row.handle is None else row.handle.get("pid"),
            exit_code=row.exit_code,
            vram_used=pub.vram.get(row.id),
            adhoc=row.submission.adhoc is not None,
            result=row.result,
            releases=tuple(release_view(r) for r in self.journal.releases(job_id=row.id))
            if releases
            else None,
            owner_uid=row.submission.owner_uid,
        )

    def job(self, job_id: str) -> JobView | None:
        row = self.journal.job(job_id)
        return None if row is None else self._job(row, releases=True)

    def jobs(self, *, include_ended: bool = False) -> list[JobView]:
        rows = self.journal.jobs(include_ended=include_ended)
        return [self._job(r) for r in rows if not is_guard_job(r.id)]  # the guard's, not jobs

    def guard(self) -> list[GuardView]:
        views = []
        for gpu in self.config.gpus or []:
            if gpu.guard is None:
                continue
            rows = self.journal.releases(job_id=guard_job_id(gpu.name))
            recent = [r for r in rows if r.created_at >= time.time() - 3600]
            flaps = len(recent) > gpu.guard.flaps_per_hour
            views.append(
                GuardView(
                    gpu=gpu.name,
                    min_free=gpu.guard.min_free,
                    released=tuple(r.tenant for r in rows if r.state in OPEN_RELEASE_STATES),
                    releases_last_hour=len(recent),
                    flaps_per_hour=gpu.guard.flaps_per_hour,
                    flapping=tuple(sorted({r.tenant for r in recent})) if flaps else (),
                )
            )
        return views

    def tenants(self) -> list[TenantView]:
        snap = self._published().snapshot
        held = held_by_tenant(snap, self.config) if snap is not None else None
        open_releases = self.journal.releases(open_only=True)
        states = {r.tenant: TENANT_STATE_OF_RELEASE[r.state] for r in open_releases}
        in_host_ram: dict[str, int] = {}
        for r in open_releases:
            for record in r.detail.get("suspended", []) if r.method == "checkpoint" else []:
                in_host_ram[r.tenant] = in_host_ram.get(r.tenant, 0) + int(record.get("bytes", 0))
        names = list(self.config.tenants) + sorted(set(states) - set(self.config.tenants))
        views = []
        for name in names:
            t = self.config.tenants.get(name)
            ref = _workload_of(t) if t is not None else None
            views.append(
                TenantView(
                    name=name,
                    state=states.get(name, TenantState.RUNNING),
                    gpu=t.gpu if t is not None else None,
                    held=None if held is None else getattr(held.get(name), "bytes", 0),
                    host_ram=in_host_ram.get(name, 0),
                    workload=None if ref is None else "/".join(ref),
                    workload_state=None if ref is None else _workload_state(*ref),
                )
            )
        return views

    def gpus(self) -> list[GpuView]:
        snap = self._published().snapshot
        if snap is None:
            return []
        return [
            GpuView(d.index, d.name, d.uuid, d.memory_total, d.memory_used, d.memory_free)
            for d in snap.devices
        ]

    def status(self) -> StatusView:
        return StatusView(
            gpus=tuple(self.gpus()),
            tenants=tuple(self.tenants()),
            jobs=tuple(self.jobs()),
            engine=self._health(),
            guard=tuple(self.guard()),
        )

    def releases(self) -> list[ReleaseView]:
        return [release_view(r) for r in self.journal.releases()]

    def events(self, *, since: float = 0.0) -> list[EventView]:
        return [event_view(e) for e in self.journal.events(since=since)]

    def events_after(self, event_id: int) -> list[EventView]:
        return [event_view(e) for e in self.journal.events_after(event_id)]

    def event_counts(self) -> dict[str, int]:
        return self.journal.event_counts()

    def health(self) -> EngineHealth:
        return self._health()
