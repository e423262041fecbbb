"""Releasing a workload's pods on this node by scaling it, and bringing them back.

The order is what makes a crash at any point recoverable from the cluster alone: the workload
is annotated first (`restore-replicas`, `released-by: NODE/JOB`, `released-at`), then scaled
through the `scale` subresource with a resourceVersion precondition. A broker that lost its
journal finds the annotations and scales back. The annotations go only once the pods are back
and Ready.

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

from gpuherd.k8s.client import Conflict, KubeClient, KubeError, Ref
from gpuherd.k8s.session import RELEASED_AT, RELEASED_BY, RESTORE_REPLICAS

Obj = dict[str, Any]
KEDA_PAUSED = "autoscaling.keda.sh/paused-replicas"
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
_KEDA_HPA = "keda-operator"


class Refused(Exception):
    """The release would fight another controller or remove pods on other nodes."""


@dataclass(frozen=True, slots=True)
class Released:
    replicas: int  # what it had: the restore target
    removed: int  # its pods on this node
    keda: str | None  # the ScaledObject paused instead of scaling


def selector(workload: Obj) -> str:
    labels = ((workload.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _targets(obj: Obj, ref: Ref) -> bool:
    target = (obj.get("spec") or {}).get("scaleTargetRef") or {}
    return bool(target.get("name") == ref.name and target.get("kind", ref.kind) == ref.kind)


def owners(
    client: KubeClient, ref: Ref, claim: Callable[[], bool] | None = None
) -> tuple[str | None, str | None]:
    """(an HPA that owns its replicas, a KEDA ScaledObject that does): at most one matters.
    Both lists, and the `claim` on the workload, are asked for at once: they are on the path
    from a Job's arrival to the scale. Raises Refused when the claim fails."""
    with ThreadPoolExecutor(3) as pool:
        scaled_objects = pool.submit(client.list_scaled_objects, ref.namespace)
        hpas = pool.submit(client.list_hpas, ref.namespace)
        claimed = pool.submit(claim) if claim is not None else None
        scaled = next((o for o in scaled_objects.result() if _targets(o, ref)), None)
        autoscalers = hpas.result()
        if claimed is not None and not claimed.result():
            raise Refused(
                f"{ref}: another node's broker is releasing it now (its workload lease); "
                "two brokers never act on one workload at once"
            )
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


def release(
    client: KubeClient,
    ref: Ref,
    *,
    node: str,
    job: str,
    workload: Obj | None = None,
    here: list[Obj] | None = None,
    claim: Callable[[], bool] | None = None,
) -> Released:
    """`workload` and `here` (its pods on this node), when the caller's watches have them,
    save a request each on the way to the scale. `claim` takes the workload's lease."""
    if workload is None:
        workload = client.get_workload(ref)
    hpa, keda = owners(client, ref, claim)
    if hpa is not None:
        raise Refused(
            f"{ref}: HorizontalPodAutoscaler {hpa} owns its replicas; gpuherd will not fight "
            "it (pause the HPA, or use an app-native method such as ollama or vllm-sleep)"
        )
    notes = (workload["metadata"].get("annotations")) or {}
    replicas = int((workload.get("spec") or {}).get("replicas") or 0)
    if RESTORE_REPLICAS in notes:  # released before (a crash after scaling): keep its number
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
    target = max(replicas - len(here), 0) if elsewhere else 0
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    annotated = client.patch_workload(
        ref,
        {
            "metadata": {
                "annotations": {
                    RESTORE_REPLICAS: str(replicas),
                    RELEASED_BY: f"{node}/{job}",
                    RELEASED_AT: at,
                }
            }
        },
    )
    if elsewhere:  # the ReplicaSet removes the cheapest pods first
        for pod in here:
            meta = pod["metadata"]
            patch = {"metadata": {"annotations": {DELETION_COST: "-2147483647"}}}
            client.patch_pod(meta["namespace"], meta["name"], patch)
    if keda is not None:
        patch = {"metadata": {"annotations": {KEDA_PAUSED: str(target)}}}
        client.patch_scaled_object(ref.namespace, keda, patch)
        return Released(replicas=replicas, removed=len(here), keda=keda)
    try:  # the annotation's write is the version the scale must not have moved past
        client.write_scale(ref, target, str(annotated["metadata"]["resourceVersion"]))
    except Conflict:
        with client.lock:
            client.conflicts += 1
        client.scale(ref, target)  # someone wrote in between: read it again, retried on 409
    return Released(replicas=replicas, removed=len(here), keda=keda)


def restore(
    client: KubeClient,
    ref: Ref,
    *,
    replicas: int | None,
    keda: str | None,
    timeout: float,
    read: Callable[[], Obj | None] | None = None,
) -> int:
    """Scale back to the annotated number (else `replicas`), wait until that many pods are
    Ready, then drop the annotations. Returns the replicas restored. `read` gives the workload
    as a watch sees it, so the wait costs no request; without it the wait polls."""
    workload = (read() if read is not None else None) or client.get_workload(ref)
    notes = workload["metadata"].get("annotations") or {}
    if RESTORE_REPLICAS not in notes and replicas is None:
        # Neither the annotation nor the release's record: the release never got as far as
        # writing anything (a crash after the intent), so there is nothing to undo.
        return int((workload.get("spec") or {}).get("replicas") or 0)
    want = int(notes[RESTORE_REPLICAS]) if RESTORE_REPLICAS in notes else int(replicas or 0)
    if keda is not None:
        client.patch_scaled_object(
            ref.namespace, keda, {"metadata": {"annotations": {KEDA_PAUSED: None}}}
        )
    client.scale(ref, want)
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
            by = str(notes.get(RELEASED_BY, ""))
            if by.split("/", 1)[0] == node and RESTORE_REPLICAS in notes:
                ref = Ref(kind, w["metadata"]["namespace"], w["metadata"]["name"])
                found.append((ref, by.split("/", 1)[-1], int(notes[RESTORE_REPLICAS])))
    return found
