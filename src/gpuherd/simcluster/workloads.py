"""Deployment -> ReplicaSet -> Pod and StatefulSet -> Pod controllers, and the garbage
collector that removes what lost its owner."""

from __future__ import annotations

import contextlib
import hashlib
import json
from typing import Any

from gpuherd.simcluster import errors
from gpuherd.simcluster.podutil import (
    PODS,
    Children,
    controller_uid,
    create_pod,
    delete_pod,
    owned,
    owner_ref,
    phase,
    ready,
    set_status,
    terminating,
)
from gpuherd.simcluster.resources import BY_KIND
from gpuherd.simcluster.store import Store, now_iso

Obj = dict[str, Any]
DEPLOYMENTS, REPLICASETS, STATEFULSETS = (
    BY_KIND[k] for k in ("Deployment", "ReplicaSet", "StatefulSet")
)
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
_HASHES: dict[tuple[str, int], str] = {}
_OWNERS = tuple(BY_KIND[k] for k in ("Job", "CronJob", "ScaledObject"))
_DEPENDENTS = tuple(BY_KIND[k] for k in ("Job", "HorizontalPodAutoscaler"))
_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def _deletion_rank(pod: Obj, colocated: dict[str, int]) -> tuple[Any, ...]:
    """The order the ReplicaSet controller deletes in: first the lowest tuple."""
    annotations = pod["metadata"].get("annotations") or {}
    try:
        cost = int(annotations.get(DELETION_COST, "0"))
    except ValueError:
        cost = 0
    node = pod["spec"].get("nodeName")
    restarts = sum(
        c.get("restartCount", 0) for c in (pod.get("status") or {}).get("containerStatuses") or []
    )
    return (
        node is not None,
        _PHASE_RANK.get(phase(pod), 1),
        ready(pod),
        cost,
        -colocated.get(node or "", 0),
        -restarts,
        # Newer pods go first: a later timestamp sorts lower once negated by reversal below.
        "".join(chr(0x10FFFF - ord(ch)) for ch in pod["metadata"].get("creationTimestamp", "")),
    )


def sync_replicaset(store: Store, rs: Obj, children: Children) -> None:
    mine = owned(children, rs)
    active = [p for p in mine if not terminating(p) and phase(p) not in ("Succeeded", "Failed")]
    want = int(rs["spec"].get("replicas", 1))
    for _ in range(want - len(active)):
        create_pod(store, rs)
    if len(active) > want:
        colocated: dict[str, int] = {}
        for p in active:
            node = p["spec"].get("nodeName") or ""
            colocated[node] = colocated.get(node, 0) + 1
        for pod in sorted(active, key=lambda p: _deletion_rank(p, colocated))[: len(active) - want]:
            delete_pod(store, pod)
    for pod in mine:
        if phase(pod) in ("Succeeded", "Failed") and not terminating(pod):
            delete_pod(store, pod)  # the controller replaces finished pods
    live = [p for p in mine if not terminating(p)]
    n_ready = sum(ready(p) for p in live)
    status: Obj = {
        "replicas": len(live),
        "fullyLabeledReplicas": len(live),
        "observedGeneration": rs["metadata"].get("generation", 1),
    }
    if n_ready:
        status.update(readyReplicas=n_ready, availableReplicas=n_ready)
    set_status(store, REPLICASETS, rs, status)


def _template_hash(template: Obj) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    return "".join(ch for ch in digest if ch in "bcdfghjklmnpqrstvwxz2456789")[:10] or "0"


def sync_deployment(store: Store, deploy: Obj, children: Children) -> None:
    meta, spec = deploy["metadata"], deploy["spec"]
    key = (meta["uid"], int(meta.get("generation", 1)))  # the template changes only with these
    if key not in _HASHES:
        if len(_HASHES) > 10_000:
            _HASHES.clear()
        _HASHES[key] = _template_hash(spec["template"])
    template_hash = _HASHES[key]
    name = f"{meta['name']}-{template_hash}"
    mine = owned(children, deploy)
    want = int(spec.get("replicas", 1))
    current = next((rs for rs in mine if rs["metadata"]["name"] == name), None)
    if current is None:
        template = json.loads(json.dumps(spec["template"]))
        template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = (
            template_hash
        )
        selector = json.loads(json.dumps(spec["selector"]))
        selector.setdefault("matchLabels", {})["pod-template-hash"] = template_hash
        new_rs: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": meta["namespace"],
                "labels": {**(template["metadata"].get("labels") or {})},
                "annotations": {
                    "deployment.kubernetes.io/desired-replicas": str(want),
                    "deployment.kubernetes.io/max-replicas": str(want + 1),
                    "deployment.kubernetes.io/revision": str(len(mine) + 1),
                },
                "ownerReferences": [owner_ref(deploy)],
            },
            "spec": {"replicas": want, "selector": selector, "template": template},
            "status": {"replicas": 0},
        }
        try:
            current = store.create(REPLICASETS, new_rs, meta["namespace"])
        except errors.ApiError:
            return
    for rs in mine:
        target = want if rs["metadata"]["name"] == name else 0
        if rs["spec"].get("replicas") != target:

            def scale(o: Obj, n: int = target) -> None:
                o["spec"]["replicas"] = n
                o["metadata"].setdefault("annotations", {})[
                    "deployment.kubernetes.io/desired-replicas"
                ] = str(want)

            store.mutate(REPLICASETS, meta["namespace"], rs["metadata"]["name"], scale)
    mine_pods = [p for rs in mine for p in owned(children, rs) if not terminating(p)]
    n_ready = sum(ready(p) for p in mine_pods)
    updated = [p for p in mine_pods if controller_uid(p) == current["metadata"]["uid"]]
    status: Obj = {"observedGeneration": meta.get("generation", 1)}
    if mine_pods:
        status.update(replicas=len(mine_pods), updatedReplicas=len(updated))
    if n_ready:
        status.update(readyReplicas=n_ready, availableReplicas=n_ready)
    if len(mine_pods) - n_ready > 0:
        status["unavailableReplicas"] = len(mine_pods) - n_ready
    available = n_ready >= want - 0 or want == 0
    old = {c["type"]: c for c in (deploy.get("status") or {}).get("conditions") or []}
    status["conditions"] = [
        _condition(
            old.get("Available"),
            "Available",
            "True" if available else "False",
            "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
            "Deployment has minimum availability."
            if available
            else "Deployment does not have minimum availability.",
        ),
        _condition(
            old.get("Progressing"),
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            f'ReplicaSet "{name}" has successfully progressed.',
        ),
    ]
    set_status(store, DEPLOYMENTS, deploy, status)


def _condition(old: Obj | None, kind: str, status: str, reason: str, message: str) -> Obj:
    if old and old["status"] == status and old.get("reason") == reason:
        return old
    stamp = now_iso()
    return {
        "type": kind,
        "status": status,
        "lastUpdateTime": stamp,
        "lastTransitionTime": stamp,
        "reason": reason,
        "message": message,
    }


def sync_statefulset(store: Store, sts: Obj, children: Children) -> None:
    meta, spec = sts["metadata"], sts["spec"]
    want = int(spec.get("replicas", 1))
    ordered = spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady"
    mine = {p["metadata"]["name"]: p for p in owned(children, sts)}
    for i in range(want):
        name = f"{meta['name']}-{i}"
        pod = mine.get(name)
        if pod is None:
            create_pod(
                store,
                sts,
                name=name,
                extra_labels={
                    "statefulset.kubernetes.io/pod-name": name,
                    "apps.kubernetes.io/pod-index": str(i),
                },
            )
            if ordered:
                break  # the next ordinal waits for this one to be Running and Ready
        elif ordered and not (ready(pod) and not terminating(pod)):
            break
    extra = sorted(
        (p for n, p in mine.items() if int(n.rsplit("-", 1)[1]) >= want),
        key=lambda p: -int(p["metadata"]["name"].rsplit("-", 1)[1]),
    )
    for pod in extra:
        if not terminating(pod):
            delete_pod(store, pod)
        if ordered:
            break  # one at a time, highest ordinal first
    live = [p for p in mine.values() if not terminating(p)]
    n_ready = sum(ready(p) for p in live)
    status: Obj = {
        "observedGeneration": meta.get("generation", 1),
        "replicas": len(live),
        "readyReplicas": n_ready,
        "currentReplicas": len(live),
        "updatedReplicas": len(live),
        "availableReplicas": n_ready,
        "collisionCount": 0,
    }
    set_status(store, STATEFULSETS, sts, status)


def collect_garbage(store: Store) -> None:
    """Delete objects whose controlling owner is gone (background propagation)."""
    uids = {
        o["metadata"]["uid"]
        for res in (DEPLOYMENTS, REPLICASETS, STATEFULSETS, *_OWNERS)
        for o in store.list(res, borrow=True)[0]
    }
    for res in (REPLICASETS, PODS, *_DEPENDENTS):
        for obj in store.list(res, borrow=True)[0]:
            uid = controller_uid(obj)
            if uid is None or uid in uids:
                continue
            if res is PODS:
                if not terminating(obj):
                    delete_pod(store, obj)
            else:
                with contextlib.suppress(errors.ApiError):
                    store.remove(res, obj["metadata"]["namespace"], obj["metadata"]["name"])
