"""The Job controller: suspend/resume, parallelism and completions, backoffLimit,
activeDeadlineSeconds, ttlSecondsAfterFinished, and the conditions the real one writes."""

from __future__ import annotations

import calendar
import contextlib
import time
from typing import Any

from gpuherd.simcluster import errors
from gpuherd.simcluster.podutil import (
    Children,
    create_pod,
    delete_pod,
    owned,
    phase,
    ready,
    set_status,
    terminating,
)
from gpuherd.simcluster.resources import BY_KIND
from gpuherd.simcluster.store import Store, now_iso

Obj = dict[str, Any]
JOBS = BY_KIND["Job"]


def _epoch(stamp: str) -> float:
    return float(calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")))


def _condition(kind: str, status: str, reason: str, message: str) -> Obj:
    stamp = now_iso()
    return {
        "type": kind,
        "status": status,
        "lastProbeTime": stamp,
        "lastTransitionTime": stamp,
        "reason": reason,
        "message": message,
    }


def _finished(status: Obj) -> str | None:
    for cond in status.get("conditions") or []:
        if cond["type"] in ("Complete", "Failed") and cond["status"] == "True":
            return str(cond["type"])
    return None


def _set_condition(status: Obj, cond: Obj) -> None:
    kept = [c for c in status.get("conditions") or [] if c["type"] != cond["type"]]
    old = next((c for c in status.get("conditions") or [] if c["type"] == cond["type"]), None)
    if old and old["status"] == cond["status"] and old["reason"] == cond["reason"]:
        return
    status["conditions"] = [*kept, cond]


def _fail(status: Obj, reason: str, message: str) -> None:
    _set_condition(status, _condition("FailureTarget", "True", reason, message))
    _set_condition(status, _condition("Failed", "True", reason, message))


def sync_job(store: Store, job: Obj, children: Children) -> None:  # noqa: PLR0912 - the controller's one decision table
    _meta, spec = job["metadata"], job["spec"]
    status: Obj = dict(job.get("status") or {})
    status["conditions"] = list(status.get("conditions") or [])
    mine = owned(children, job)
    active = [p for p in mine if phase(p) not in ("Succeeded", "Failed") and not terminating(p)]
    succeeded = sum(phase(p) == "Succeeded" for p in mine)
    restarts = sum(
        c.get("restartCount", 0)
        for p in mine
        for c in (p.get("status") or {}).get("containerStatuses") or []
    )
    failed = sum(phase(p) == "Failed" for p in mine) + restarts
    done = _finished(status)
    if done:
        _ttl(store, job, status)
    elif spec.get("suspend"):
        for pod in active:
            delete_pod(store, pod)
        active = []
        status.pop("startTime", None)
        _set_condition(status, _condition("Suspended", "True", "JobSuspended", "Job suspended"))
    else:
        if any(c["type"] == "Suspended" and c["status"] == "True" for c in status["conditions"]):
            _set_condition(status, _condition("Suspended", "False", "JobResumed", "Job resumed"))
        status.setdefault("startTime", now_iso())
        completions = int(spec.get("completions", 1))
        deadline = spec.get("activeDeadlineSeconds")
        if succeeded >= completions:
            reason, message = "CompletionsReached", "Reached expected number of succeeded pods"
            _set_condition(status, _condition("SuccessCriteriaMet", "True", reason, message))
            _set_condition(status, _condition("Complete", "True", reason, message))
            status["completionTime"] = now_iso()
        elif failed > int(spec.get("backoffLimit", 6)):
            _fail(status, "BackoffLimitExceeded", "Job has reached the specified backoff limit")
        elif deadline is not None and time.time() - _epoch(status["startTime"]) >= deadline:
            _fail(status, "DeadlineExceeded", "Job was active longer than specified deadline")
        if _finished(status):
            for pod in active:
                delete_pod(store, pod)
            active = []
        else:
            want = min(int(spec.get("parallelism", 1)), completions - succeeded) - len(active)
            for _ in range(max(0, want)):
                active.append(create_pod(store, job))
    status["active"] = len(active)
    status["ready"] = sum(ready(p) for p in active)
    status["terminating"] = sum(terminating(p) for p in mine)
    status["uncountedTerminatedPods"] = {}
    for key, value in (("succeeded", succeeded), ("failed", failed)):
        if value:
            status[key] = value
    if not status["active"]:
        status.pop("active")
    if not status["conditions"]:
        status.pop("conditions")
    set_status(store, JOBS, job, status)


def _ttl(store: Store, job: Obj, status: Obj) -> None:
    ttl = job["spec"].get("ttlSecondsAfterFinished")
    if ttl is None:
        return
    finished_at = next(
        (
            c["lastTransitionTime"]
            for c in status.get("conditions") or []
            if c["type"] in ("Complete", "Failed") and c["status"] == "True"
        ),
        None,
    )
    if finished_at is not None and time.time() - _epoch(finished_at) >= ttl:
        with contextlib.suppress(errors.ApiError):
            store.remove(JOBS, job["metadata"]["namespace"], job["metadata"]["name"])
