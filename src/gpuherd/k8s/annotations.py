"""Workload and Job annotations turned into gpuherd's own declarations.

A Deployment or StatefulSet annotated `gpuherd.io/vram` (or `gpuherd.io/priority`) is a tenant:
`gpuherd.io/priority: "10"`, `gpuherd.io/vram: 4Gi`, `gpuherd.io/preempt: "ollama,kubernetes"`
(methods in order: `kubernetes` scales; `ollama` and `vllm-sleep` reach the pod on this node
at `gpuherd.io/url`, default `http://{pod_ip}:11434` and `:8000`; `checkpoint` parks its
processes, found through hostPID, in host RAM), `gpuherd.io/tenant` (its name,
default the workload's), `gpuherd.io/max-downtime`, `gpuherd.io/cooldown`,
`gpuherd.io/release-timeout`. Its processes are found by `match: {pod: {namespace, labels}}`
from the workload's selector.

A Job labelled `gpuherd.io/queue` with `gpuherd.io/vram` and `gpuherd.io/priority` (and
optionally `gpuherd.io/not-on-cpu: 60s`, the not_on_cpu check) is queued for admission. A bad
annotation never stops the broker: it is reported by name and skipped.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from gpuherd.ids import GpuName
from gpuherd.spec.model import (
    CheckpointMethod,
    KubernetesMethod,
    OllamaMethod,
    PreemptMethod,
    TenantSpec,
    VllmSleepMethod,
)

Obj = dict[str, Any]
P = "gpuherd.io/"
QUEUE_LABEL = "gpuherd.io/queue"
JOB_ID = "gpuherd.io/job-id"  # set when a Job is launched (or created by gpuherd): admitted once
CREATED_BY = "gpuherd.io/created-by"  # the node whose broker created it from a config template
REFUSED = "gpuherd.io/refused"  # why its preflight refused it
OUTCOME = "gpuherd.io/outcome"  # the gpuherd result, once recorded (and reported as an event)
STOPPED = "gpuherd.io/stopped"  # the broker ended it (its timeout, not_on_cpu, a cancel)
# App-native methods an annotation may name, and the port each app serves on by default.
_APP_NATIVE: dict[str, tuple[type[OllamaMethod] | type[VllmSleepMethod], int]] = {
    "ollama": (OllamaMethod, 11434),
    "vllm-sleep": (VllmSleepMethod, 8000),
}
# Its ttlSecondsAfterFinished, taken over at launch: the Job stays until its result is recorded.
TTL = "gpuherd.io/ttl-seconds-after-finished"
NOT_ON_CPU = "gpuherd.io/not-on-cpu"  # the not_on_cpu check's `within` for a queued Job
TENANT_KEYS = ("vram", "priority")


ARGO_MARKS = ("argocd.argoproj.io/instance", "argocd.argoproj.io/tracking-id")


def argo_tracked(obj: Obj) -> bool:
    """Whether Argo CD tracks it: its self-heal would scale a released workload back unless
    the Application ignores `/spec/replicas`."""
    meta = obj["metadata"]
    marks = {**(meta.get("labels") or {}), **(meta.get("annotations") or {})}
    return any(m in marks for m in ARGO_MARKS)


def is_tenant(obj: Obj) -> bool:
    notes = obj["metadata"].get("annotations") or {}
    return any(P + k in notes for k in TENANT_KEYS)


def tenant_name(obj: Obj) -> str:
    notes = obj["metadata"].get("annotations") or {}
    return str(notes.get(P + "tenant") or obj["metadata"]["name"])


def _methods(obj: Obj, kind: str, skipped: list[str]) -> list[PreemptMethod]:
    notes = obj["metadata"].get("annotations") or {}
    meta = obj["metadata"]
    names = [m.strip() for m in str(notes.get(P + "preempt") or "kubernetes").split(",")]
    methods: list[PreemptMethod] = []
    for name in filter(None, names):
        if name == "kubernetes":
            methods.append(
                KubernetesMethod.model_validate(
                    {"kind": kind, "namespace": meta["namespace"], "name": meta["name"]}
                )
            )
        elif name == "checkpoint":
            # The pod's processes, found through hostPID, parked in host RAM; the pod stays.
            methods.append(CheckpointMethod.model_validate({}))
        elif name in _APP_NATIVE:
            # Reached at the pod on this node: `gpuherd.io/url`, else the app's usual port.
            method, port = _APP_NATIVE[name]
            url = str(notes.get(P + "url") or f"http://{{pod_ip}}:{port}")
            methods.append(method.model_validate({"url": url}))
        else:
            skipped.append(f"{kind.lower()}/{meta['namespace']}/{meta['name']}: preempt {name}")
    return methods


def tenant_spec(obj: Obj, kind: str, gpu: GpuName | None, skipped: list[str]) -> TenantSpec | None:
    """The tenant a workload's annotations declare (None and a note in `skipped` if bad)."""
    meta = obj["metadata"]
    notes = meta.get("annotations") or {}
    labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    data: dict[str, Any] = {
        "gpu": gpu,
        "vram": notes.get(P + "vram", "1Gi"),
        "priority": notes.get(P + "priority", 0),
        "match": {"pod": {"namespace": meta["namespace"], "labels": labels}},
        "preempt": _methods(obj, kind, skipped),
    }
    for key, field in (
        ("max-downtime", "max_downtime"),
        ("cooldown", "cooldown"),
        ("release-timeout", "release_timeout"),
    ):
        if P + key in notes:
            data[field] = notes[P + key]
    if str(notes.get(P + "preemptible", "true")).lower() == "false":
        data["preemptible"] = False
    try:
        return TenantSpec.model_validate(data)
    except ValidationError as exc:
        where = f"{kind.lower()}/{meta['namespace']}/{meta['name']}"
        first = exc.errors()[0]
        field = ".".join(str(x) for x in first["loc"])
        skipped.append(f"{where}: annotation {field}: {first['msg']}")
        return None


def job_checks(job: Obj) -> list[dict[str, Any]]:
    """Success checks a queued Job's annotations ask for: `gpuherd.io/not-on-cpu: 60s`."""
    notes = job["metadata"].get("annotations") or {}
    within = notes.get(NOT_ON_CPU)
    return [{"not_on_cpu": {"within": str(within)}}] if within else []


def job_request(job: Obj) -> tuple[str, int, float | None]:
    """(vram annotation, priority, timeout from activeDeadlineSeconds) of a queued Job."""
    notes = job["metadata"].get("annotations") or {}
    deadline = (job.get("spec") or {}).get("activeDeadlineSeconds")
    return (
        str(notes.get(P + "vram", "1Gi")),
        int(str(notes.get(P + "priority", "0"))),
        float(deadline) if deadline else None,
    )


def waiting_for_admission(job: Obj) -> bool:
    """Suspended, never started and never launched by gpuherd (a Job it stopped or created
    carries its job id): the only state in which gpuherd admits a Job."""
    spec, status = job.get("spec") or {}, job.get("status") or {}
    launched = JOB_ID in (job["metadata"].get("annotations") or {})
    return bool(spec.get("suspend")) and not status.get("startTime") and not launched


def lands_on(job: Obj, node: str, node_labels: dict[str, str]) -> bool:
    """Whether the Job's nodeSelector allows this node (required affinity on hostname too)."""
    pod = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    selector = pod.get("nodeSelector") or {}
    if any(node_labels.get(k) != v for k, v in selector.items()):
        return False
    if pod.get("nodeName") and pod["nodeName"] != node:
        return False
    affinity = (
        ((pod.get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        )
        or {}
    ).get("nodeSelectorTerms") or []
    if not affinity:
        return True
    for term in affinity:
        exprs = term.get("matchExpressions") or []
        if all(
            (e.get("operator") == "In" and node_labels.get(e.get("key")) in (e.get("values") or []))
            or (
                e.get("operator") == "NotIn"
                and node_labels.get(e.get("key")) not in (e.get("values") or [])
            )
            or (e.get("operator") == "Exists" and e.get("key") in node_labels)
            or (e.get("operator") == "DoesNotExist" and e.get("key") not in node_labels)
            for e in exprs
        ):
            return True
    return False
