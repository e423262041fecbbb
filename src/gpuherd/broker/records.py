"""The journal's records, as frozen values: what the rest of the broker reads."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gpuherd.broker.states import JobState, ReleaseState
from gpuherd.broker.submission import Submission
from gpuherd.ids import JobId, TenantName
from gpuherd.spec.model import PreemptMethod, TenantSpec


@dataclass(frozen=True, slots=True)
class Handle:
    """How a launcher finds a job it started again, after a restart: for local processes the
    group leader's pid and start time, for a Kubernetes Job its namespace and name."""

    launcher: str
    ident: tuple[tuple[str, Any], ...]

    @classmethod
    def of(cls, launcher: str, **ident: Any) -> Handle:
        return cls(launcher, tuple(sorted(ident.items())))

    def get(self, key: str) -> Any:
        return dict(self.ident).get(key)

    def to_json(self) -> str:
        return json.dumps({"launcher": self.launcher, **dict(self.ident)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Handle:
        data = dict(json.loads(text))
        return cls.of(str(data.pop("launcher")), **data)


@dataclass(frozen=True, slots=True)
class JobRow:
    id: JobId
    name: str
    submission: Submission
    state: JobState
    submitted_at: float
    started_at: float | None
    ended_at: float | None
    handle: Handle | None
    exit_code: int | None
    reason: str | None
    result: dict[str, Any] | None = None  # the result record, once the job ended

    @classmethod
    def from_sql(cls, r: tuple[Any, ...], submission: Submission | None = None) -> JobRow:
        """From a row of the journal's `jobs` table, in its column order; `submission`: the
        row's submission parsed before (it never changes once written)."""
        return cls(
            id=JobId(r[0]),
            name=r[1],
            submission=submission or Submission.from_json(r[2], name=r[1], key=r[11]),
            state=JobState(r[3]),
            submitted_at=r[4],
            started_at=r[5],
            ended_at=r[6],
            handle=Handle.from_json(r[7]) if r[7] else None,
            exit_code=r[8],
            reason=r[9],
            result=json.loads(r[10]) if r[10] else None,
        )


@dataclass(frozen=True, slots=True)
class RestorePlan:
    """Everything a restore needs, journaled with the release: the tenant's whole declaration
    as it was (its methods, how to find its processes, GPU, restore timeout, health) and which
    method released it. A tenant removed from the config since is still restored from this."""

    tenant: TenantSpec
    index: int  # of the method in the tenant's `preempt` list

    @property
    def method(self) -> PreemptMethod:
        return self.tenant.preempt[self.index]

    def to_json(self) -> str:
        spec = self.tenant.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        return json.dumps({"tenant": spec, "index": self.index}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> RestorePlan | None:
        if not text:
            return None
        data = json.loads(text)
        return cls(tenant=TenantSpec.model_validate(data["tenant"]), index=int(data["index"]))


@dataclass(frozen=True, slots=True)
class ReleaseRow:
    id: int
    job_id: JobId
    tenant: TenantName
    method: str | None
    state: ReleaseState
    detail: dict[str, Any]
    created_at: float
    released_at: float | None
    restored_at: float | None
    attempts: int
    failed_at: float | None = None  # the last failed restore: retries back off from here
    plan: RestorePlan | None = None  # None only for releases journaled before plans existed

    @classmethod
    def from_sql(cls, r: tuple[Any, ...]) -> ReleaseRow:
        """From a row of the journal's `releases` table, in its column order."""
        return cls(
            id=r[0],
            job_id=JobId(r[1]),
            tenant=TenantName(r[2]),
            method=r[3],
            state=ReleaseState(r[4]),
            detail=json.loads(r[5]),
            created_at=r[6],
            released_at=r[7],
            restored_at=r[8],
            attempts=r[9],
            failed_at=r[10],
            plan=RestorePlan.from_json(r[11]),
        )


@dataclass(frozen=True, slots=True)
class EventRow:
    id: int
    at: float
    kind: str
    job_id: JobId | None
    tenant: str | None
    message: str
