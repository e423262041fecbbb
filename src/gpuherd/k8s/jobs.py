"""What a Kubernetes Job says about itself (ended how, when, pinned where), and the Job gpuherd
creates from a config job's template."""

from __future__ import annotations

import calendar
import copy
import time
from typing import Any

from gpuherd.k8s.annotations import CREATED_BY, JOB_ID, QUEUE_LABEL, STOPPED
from gpuherd.spec.jobtemplate import object_name

Obj = dict[str, Any]
HOSTNAME = "kubernetes.io/hostname"


def _condition(job: Obj) -> Obj | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return dict(cond)
    return None


def ended(job: Obj) -> str | None:
    """`Complete` or `Failed` once its controller says so; None while it runs or waits."""
    cond = _condition(job)
    return None if cond is None else str(cond["type"])


def ended_at(job: Obj) -> float | None:
    """When it ended (epoch seconds), from its condition's transition time."""
    cond = _condition(job)
    stamp = None if cond is None else cond.get("lastTransitionTime")
    if not stamp:
        return None
    try:
        return float(calendar.timegm(time.strptime(str(stamp)[:19], "%Y-%m-%dT%H:%M:%S")))
    except ValueError:
        return None


def timed_out(job: Obj) -> str | None:
    """Why it failed, in gpuherd's words, when its controller ended it for running past its
    activeDeadlineSeconds (reason DeadlineExceeded); None otherwise."""
    cond = _condition(job)
    if cond is None or cond.get("type") != "Failed" or cond.get("reason") != "DeadlineExceeded":
        return None
    deadline = (job.get("spec") or {}).get("activeDeadlineSeconds")
    if STOPPED in (job["metadata"].get("annotations") or {}):
        return None  # the broker ended it; it says why itself
    return (
        f"timed out: the Job ran past its activeDeadlineSeconds ({deadline}s) and its "
        "controller failed it (DeadlineExceeded)"
    )


def pinned_to(job: Obj) -> str | None:
    """The node its pod template's node selector pins it to, if any."""
    pod = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    value = (pod.get("nodeSelector") or {}).get(HOSTNAME)
    return None if value is None else str(value)


def only_for(job: Obj, node: str) -> bool:
    """Its pods can land on `node` alone (a node selector or nodeName naming it): no other
    node's broker could take it, so no lease needs to decide."""
    pod = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    return node in (pinned_to(job), pod.get("nodeName"))


def ours(job: Obj, node: str) -> bool:
    """Launched by this node's broker: it carries a gpuherd job id and is pinned here (or was
    created here from a config template and never pinned)."""
    notes = job["metadata"].get("annotations") or {}
    if JOB_ID not in notes:
        return False
    return pinned_to(job) == node or notes.get(CREATED_BY) == node


def started(job: Obj) -> bool:
    return bool((job.get("status") or {}).get("startTime")) or not (job.get("spec") or {}).get(
        "suspend"
    )


def label_value(text: str) -> str:
    """A valid label value (at most 63 of letters, digits, '-', '_', '.', alphanumeric ends)."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "-" for c in text)[:63]
    return cleaned.strip("-_.") or "job"


def from_template(
    template: Obj,
    *,
    name: str,
    job_id: str,
    node: str,
    vram: str,
    priority: int,
) -> Obj:
    """The Job a config job `name` runs as: its template, suspended, labelled for the queue and
    annotated with the job id (so no broker admits it again) and the node that created it."""
    job = copy.deepcopy(template)
    meta = job.setdefault("metadata", {})
    meta["name"] = object_name(str(meta.get("name") or name), job_id)
    meta.pop("generateName", None)
    meta.setdefault("namespace", "default")
    meta["labels"] = {**(meta.get("labels") or {}), QUEUE_LABEL: label_value(name)}
    meta["annotations"] = {
        **(meta.get("annotations") or {}),
        "gpuherd.io/vram": vram,
        "gpuherd.io/priority": str(priority),
        JOB_ID: job_id,
        CREATED_BY: node,
    }
    job["spec"]["suspend"] = True
    return job
