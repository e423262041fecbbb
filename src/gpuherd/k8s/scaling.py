"""Releasing a workload's pods on this node by scaling it, and bringing them back.

The order is what makes a crash at any point recoverable from the cluster alone: the workload
is annotated first (`restore-replicas`, `released-by: NODE/JOB`, `released-at`), then scaled
through the `scale` subresource with a resourceVersion precondition. A broker that lost its
journal finds the annotations and scales back. The annotations go only once the pods are back
and Ready.

Two brokers never act on one workload at once: the annotation is written with the workload's
resourceVersion as a precondition, so of two brokers annotating it one gets a 409 and reads it
again, and a workload `released-by` another node is left to that node's broker while it holds
its GPU lease (`gpuherd.k8s.gpulease`). One whose node stopped renewing it long enough ago is
taken over, its `restore-replicas` kept; the node's broker, should it return, leaves it alone.

Never fight another owner of `spec.replicas`: an HPA targeting the workload makes the release
refused with the reason; a KEDA ScaledObject is paused with its own annotation instead. A
workload with pods on other nodes loses only this node's: they get the lowest
pod-deletion-cost and the workload shrinks by their count. A StatefulSet cannot choose which
pods go (it removes the highest ordinals), so one with pods elsewhere is refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gpuherd.k8s import gpulease
from gpuherd.k8s.client import Conflict, KubeClient, KubeError, Ref
from gpuherd.k8s.pods import Cache
from gpuherd.k8s.session import RELEASED_AT, RELEASED_BY, RESTORE_REPLICAS

Obj = dict[str, Any]
KEDA_PAUSED = "autoscaling.keda.sh/paused-replicas"
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
_KEDA_HPA = "keda-operator"
_CLAIM_ATTEMPTS = 5
_AT = "%Y-%m-%dT%H:%M:%SZ"


class Refused(Exception):
    """The release would fight another controller or remove pods on other nodes."""


@dataclass(frozen=True, slots=True)
class Released:
    replicas: int  # what it had: the restore target
    removed: int  # its pods on this node
    keda: str | None  # the ScaledObject paused instead of scaling
    taken_from: str | None = None  # the node whose lapsed release this one took over


def selector(workload: Obj) -> str:
    labels = ((workload.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _targets(obj: Obj, ref: Ref) -> bool:
    target = (obj.get("spec") or {}).get("scaleTargetRef") or {}
    return bool(target.get("name") == ref.name and target.get("kind", ref.kind) == ref.kind)


def owners(client: KubeClient, ref: Ref) -> tuple[str | None, str | None]:
    """(an HPA that owns its replicas, a KEDA ScaledObject that does): at most one matters.
    Both lists are asked for at once: they are on the path from a Job's arrival to the scale."""
    with ThreadPoolExecutor(2) as pool:
        scaled_objects = pool.submit(client.list_scaled_objects, ref.namespace)
        hpas = pool.submit(client.list_hpas, ref.namespace)
        scaled = next((o for o in scaled_objects.result() if _targets(o, ref)), None)
        autoscalers = hpas.result()
    if scaled is not None:
        return None, str(scaled["metadata"]["name"])
    for hpa in autoscalers:
        managed = (hpa["metadata"].get("labels") or {}).get("app.kubernetes.io/managed-by")
        if _targets(hpa, ref) and managed != _KEDA_HPA:
            return str(hpa["metadata"]["name"]), None
    return None, None


def _pods(client: KubeClient, ref: Ref, workload: Obj, node: str) -> tuple[list[Obj], int]:
    """Its live pods on `node`, and how many it has elsewhere."""
    pods = client.list_pods(namespace=ref.namespace, labels=selector(workload)).get("items") or []
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    here = [p for p in live if (p.get("spec") or {}).get("nodeName") == node]
    return here, len(live) - len(here)


def released_by(workload: Obj) -> tuple[str, str] | None:
    """(node, job) of the release its annotations record, if any."""
    by = str((workload["metadata"].get("annotations") or {}).get(RELEASED_BY) or "")
    if not by:
        return None
    return by.split("/", 1)[0], by.split("/", 1)[-1]


def _released_at(workload: Obj) -> float:
    """When its annotations say it was released (epoch seconds; unreadable: as old as can be)."""
    notes = workload["metadata"].get("annotations") or {}
    try:
        return datetime.strptime(str(notes.get(RELEASED_AT)), _AT).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return 0.0


def release(
    client: KubeClient,
    ref: Ref,
    *,
    node: str,
    job: str,
    workload: Obj | None = None,
    here: list[Obj] | None = None,
    watched: Cache | None = None,
) -> Released:
    """`workload` and `here` (its pods on this node), when the caller's watches have them,
    save a request each on the way to the scale; `watched`: gpuherd's leases, for whether the
    node that released it before still holds it."""
    if workload is None:
        workload = client.get_workload(ref)
    hpa, keda = owners(client, ref)
    if hpa is not None:
        raise Refused(
            f"{ref}: HorizontalPodAutoscaler {hpa} owns its replicas; gpuherd will not fight "
            "it (pause the HPA, or use an app-native method such as ollama or vllm-sleep)"
        )
    for _ in range(_CLAIM_ATTEMPTS):
        taken_from = _claimable(client, ref, workload, node, watched)
        replicas, here, elsewhere, target = _shrink(client, ref, workload, node, here)
        claim = {
            # The version read: a write by anyone since (another broker's claim) is a 409.
            "resourceVersion": workload["metadata"]["resourceVersion"],
            "annotations": {
                RESTORE_REPLICAS: str(replicas),
                RELEASED_BY: f"{node}/{job}",
                RELEASED_AT: datetime.now(UTC).strftime(_AT),
            },
        }
        try:
            annotated = client.patch_workload(ref, {"metadata": claim})
            break
        except Conflict:
            workload = client.get_workload(ref)
    else:
        raise Conflict(409, f"{ref}: it kept changing under us ({_CLAIM_ATTEMPTS} tries)")
    if elsewhere:  # the ReplicaSet removes the cheapest pods first
        for pod in here:
            meta = pod["metadata"]
            patch = {"metadata": {"annotations": {DELETION_COST: "-2147483647"}}}
            client.patch_pod(meta["namespace"], meta["name"], patch)
    if keda is not None:
        patch = {"metadata": {"annotations": {KEDA_PAUSED: str(target)}}}
        client.patch_scaled_object(ref.namespace, keda, patch)
        return Released(replicas, len(here), keda, taken_from)
    try:  # the annotation's write is the version the scale must not have moved past
        client.write_scale(ref, target, str(annotated["metadata"]["resourceVersion"]))
    except Conflict:
        with client.lock:
            client.conflicts += 1
        client.scale(ref, target)  # someone wrote in between: read it again, retried on 409
    return Released(replicas, len(here), keda, taken_from)


def _shrink(
    client: KubeClient, ref: Ref, workload: Obj, node: str, here: list[Obj] | None
) -> tuple[int, list[Obj], int, int]:
    """(the replicas to restore, its pods on this node, how many it has elsewhere, the
    replicas to scale to)."""
    notes = (workload["metadata"].get("annotations")) or {}
    replicas = int((workload.get("spec") or {}).get("replicas") or 0)
    if RESTORE_REPLICAS in notes:  # released before (a crash, a takeover): keep its number
        replicas = int(notes[RESTORE_REPLICAS])
    if here is None:
        here, elsewhere = _pods(client, ref, workload, node)
    else:
        live = int((workload.get("status") or {}).get("replicas") or 0)
        elsewhere = max(live - len(here), 0)
    if elsewhere and ref.kind == "StatefulSet":
        raise Refused(
            f"{ref}: {elsewhere} of its pods run on other nodes and a StatefulSet always "
            "removes its highest ordinals, so its pods on this node cannot be singled out"
        )
    return replicas, here, elsewhere, max(replicas - len(here), 0) if elsewhere else 0


def _claimable(
    client: KubeClient, ref: Ref, workload: Obj, node: str, watched: Cache | None
) -> str | None:
    """Raises Refused while another node's broker holds it; returns the node whose lapsed
    release this one takes over (None: nobody's, or ours already)."""
    by = released_by(workload)
    if by is None or by[0] == node:
        return None
    other, job = by
    if not gpulease.lapsed(client, watched, other, _released_at(workload), time.time()):
        raise Refused(
            f"{ref}: released by node {other} for job {job}, whose broker holds its GPU lease "
            "and restores it; two brokers never act on one workload at once"
        )
    return other


def restore(
    client: KubeClient,
    ref: Ref,
    *,
    replicas: int | None,
    keda: str | None,
    timeout: float,
    read: Callable[[], Obj | None] | None = None,
    node: str | None = None,
) -> int:
    """Scale back to the annotated number (else `replicas`), wait until that many pods are
    Ready, then drop the annotations. Returns the replicas restored. `read` gives the workload
    as a watch sees it, so the wait costs no request; without it the wait polls. `node`: this
    broker's, which leaves a workload another node took over to that node's broker."""
    workload = (read() if read is not None else None) or client.get_workload(ref)
    notes = workload["metadata"].get("annotations") or {}
    by = released_by(workload)
    if node is not None and by is not None and by[0] != node:
        if replicas is None:  # another node's release, and ours wrote nothing: not ours to undo
            return int((workload.get("spec") or {}).get("replicas") or 0)
        raise KubeError(
            0, f"{ref}: node {by[0]} took it over for job {by[1]} and restores it when done"
        )
    if RESTORE_REPLICAS not in notes and replicas is None:
        # Neither the annotation nor the release's record: the release never got as far as
        # writing anything (a crash after the intent), so there is nothing to undo.
        return int((workload.get("spec") or {}).get("replicas") or 0)
    want = int(notes[RESTORE_REPLICAS]) if RESTORE_REPLICAS in notes else int(replicas or 0)
    if keda is not None:
        client.patch_scaled_object(
            ref.namespace, keda, {"metadata": {"annotations": {KEDA_PAUSED: None}}}
        )
    client.patch_scale(ref, want)  # whatever it has now: one request, no read first
    deadline = time.monotonic() + timeout
    while True:
        seen = (read() if read is not None else None) or client.get_workload(ref)
        if _ready(seen, want):
            break
        if time.monotonic() > deadline:
            raise KubeError(0, f"{ref}: {want} pods not Ready after {timeout:g}s")
        time.sleep(0.05 if read is not None else 0.25)
    gone = {RESTORE_REPLICAS: None, RELEASED_BY: None, RELEASED_AT: None}
    client.patch_workload(ref, {"metadata": {"annotations": gone}})
    return want


def _ready(workload: Obj, want: int) -> bool:
    """Its controller saw our scale (a cached copy may predate it) and `want` pods are Ready."""
    meta, spec, status = (
        workload["metadata"],
        workload.get("spec") or {},
        workload.get("status") or {},
    )
    seen_ours = int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
    scaled = int(spec.get("replicas") or 0) == want
    return seen_ours and scaled and int(status.get("readyReplicas") or 0) >= want


def released_here(client: KubeClient, node: str) -> list[tuple[Ref, str, int]]:
    """Workloads annotated as released by this node: (ref, job, restore-replicas). What a
    broker whose journal was lost restores from."""
    found = []
    for kind in ("Deployment", "StatefulSet"):
        for w in client.list_workloads(kind):
            notes = w["metadata"].get("annotations") or {}
            by = released_by(w)
            if by is not None and by[0] == node and RESTORE_REPLICAS in notes:
                ref = Ref(kind, w["metadata"]["namespace"], w["metadata"]["name"])
                found.append((ref, by[1], int(notes[RESTORE_REPLICAS])))
    return found
