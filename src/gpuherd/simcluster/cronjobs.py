"""The CronJob controller: a Job from `jobTemplate` at each scheduled time (the latest missed
one only, as the real controller), concurrencyPolicy, suspend, history limits, status."""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gpuherd.simcluster import defaults, errors
from gpuherd.simcluster.podutil import Children, delete_pod, owned, owner_ref
from gpuherd.simcluster.resources import BY_KIND
from gpuherd.simcluster.store import Store, clone

Obj = dict[str, Any]
CRONJOBS, JOBS = BY_KIND["CronJob"], BY_KIND["Job"]
_STAMP = "%Y-%m-%dT%H:%M:%SZ"


def _parse(stamp: str) -> dt.datetime:
    return dt.datetime.strptime(stamp, _STAMP).replace(tzinfo=dt.UTC)


def _format(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime(_STAMP)


def _finished(job: Obj) -> str | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond["type"] in ("Complete", "Failed") and cond["status"] == "True":
            return str(cond["type"])
    return None


def due(cj: Obj, now: dt.datetime) -> dt.datetime | None:
    """The latest scheduled time after the last one run and not after `now`."""
    from croniter import croniter

    spec, status = cj["spec"], cj.get("status") or {}
    zone: dt.tzinfo = dt.UTC
    if spec.get("timeZone"):
        with contextlib.suppress(ZoneInfoNotFoundError, ValueError):
            zone = ZoneInfo(spec["timeZone"])
    since = _parse(status.get("lastScheduleTime") or cj["metadata"]["creationTimestamp"])
    times = croniter(spec["schedule"], since.astimezone(zone))
    latest = None
    for _ in range(10_000):  # bounded: a schedule every minute for a week
        nxt = times.get_next(dt.datetime)
        if nxt > now:
            break
        latest = nxt
    return latest


def _create_job(store: Store, cj: Obj, when: dt.datetime) -> Obj:
    template = clone(cj["spec"]["jobTemplate"])
    meta = template.get("metadata") or {}
    namespace = cj["metadata"]["namespace"]
    name = f"{cj['metadata']['name']}-{int(when.timestamp()) // 60}"
    job: Obj = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": meta.get("labels") or {},
            "annotations": {
                **(meta.get("annotations") or {}),
                "batch.kubernetes.io/cronjob-scheduled-timestamp": _format(when),
            },
            "ownerReferences": [owner_ref(cj)],
        },
        "spec": template.get("spec") or {},
    }
    defaults.apply(job)
    store.create(JOBS, job, namespace)
    return store.mutate(JOBS, namespace, name, defaults.job_labels)


def _remove_job(store: Store, job: Obj, children: Children) -> None:
    for pod in owned(children, job):
        delete_pod(store, pod)
    with contextlib.suppress(errors.ApiError):
        store.remove(JOBS, job["metadata"]["namespace"], job["metadata"]["name"])


def sync_cronjob(store: Store, cj: Obj, children: Children, now: dt.datetime) -> None:
    spec = cj["spec"]
    status: Obj = dict(cj.get("status") or {})
    jobs = owned(children, cj)
    active = [j for j in jobs if not _finished(j)]
    when = None if spec.get("suspend") else due(cj, now)
    if when is not None:
        policy = spec.get("concurrencyPolicy", "Allow")
        if policy == "Replace":
            for job in active:
                _remove_job(store, job, children)
            active = []
        if policy != "Forbid" or not active:
            with contextlib.suppress(errors.ApiError):  # made already: a pass raced this one
                active.append(_create_job(store, cj, when))
            status["lastScheduleTime"] = _format(when)
    for kind, limit in (
        ("Complete", spec.get("successfulJobsHistoryLimit", 3)),
        ("Failed", spec.get("failedJobsHistoryLimit", 1)),
    ):
        done = sorted(
            (j for j in jobs if _finished(j) == kind),
            key=lambda j: j["metadata"]["creationTimestamp"],
        )
        for job in done[: max(0, len(done) - int(limit))]:
            _remove_job(store, job, children)
    successes = [j for j in jobs if _finished(j) == "Complete"]
    if successes:
        status["lastSuccessfulTime"] = max(
            (j.get("status") or {}).get("completionTime", "") for j in successes
        )
    refs = [
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": j["metadata"]["name"],
            "namespace": j["metadata"]["namespace"],
            "uid": j["metadata"]["uid"],
            "resourceVersion": j["metadata"]["resourceVersion"],
        }
        for j in active
    ]
    if refs:
        status["active"] = refs
    else:
        status.pop("active", None)
    if status != (cj.get("status") or {}):
        from gpuherd.simcluster.podutil import set_status

        set_status(store, CRONJOBS, cj, status)
