"""A stand-in for the KEDA operator, enough for gpuherd's pause path: a ScaledObject owns an HPA
`keda-hpa-NAME` on its target (as KEDA's does), and `autoscaling.keda.sh/paused-replicas: N`
scales the target to N and holds it there; removing it resumes at max(1, minReplicaCount).
Triggers are not evaluated."""

from __future__ import annotations

import contextlib
from typing import Any

from gpuherd.simcluster import defaults, errors
from gpuherd.simcluster.podutil import owner_ref, set_status
from gpuherd.simcluster.resources import BY_KIND
from gpuherd.simcluster.store import Store, now_iso

Obj = dict[str, Any]
SCALEDOBJECTS, HPAS = BY_KIND["ScaledObject"], BY_KIND["HorizontalPodAutoscaler"]
PAUSED = "autoscaling.keda.sh/paused-replicas"


def _hpa(so: Obj, minimum: int) -> Obj:
    name, target = so["metadata"]["name"], so["spec"]["scaleTargetRef"]
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": f"keda-hpa-{name}",
            "namespace": so["metadata"]["namespace"],
            "labels": {
                "app.kubernetes.io/managed-by": "keda-operator",
                "app.kubernetes.io/name": f"keda-hpa-{name}",
                "app.kubernetes.io/part-of": name,
                "scaledobject.keda.sh/name": name,
            },
            "ownerReferences": [owner_ref(so)],
        },
        "spec": {
            "scaleTargetRef": {
                "apiVersion": target.get("apiVersion", "apps/v1"),
                "kind": target.get("kind", "Deployment"),
                "name": target["name"],
            },
            "minReplicas": minimum,
            "maxReplicas": int(so["spec"].get("maxReplicaCount", 100)),
        },
    }


def sync_scaledobject(store: Store, so: Obj) -> None:
    meta, spec = so["metadata"], so.get("spec") or {}
    namespace = meta["namespace"]
    target = spec.get("scaleTargetRef") or {}
    res = BY_KIND.get(str(target.get("kind", "Deployment")))
    minimum = max(1, int(spec.get("minReplicaCount", 0)))
    if store.find(HPAS, namespace, f"keda-hpa-{meta['name']}") is None and target.get("name"):
        with contextlib.suppress(errors.ApiError):
            hpa = _hpa(so, minimum)
            defaults.apply(hpa)
            store.create(HPAS, hpa, namespace)
    workload = store.find(res, namespace, str(target.get("name", ""))) if res else None
    status: Obj = dict(so.get("status") or {})
    paused = (meta.get("annotations") or {}).get(PAUSED)
    want: int | None = None
    if paused is not None:
        with contextlib.suppress(ValueError):
            want = max(0, int(paused))
        status["pausedReplicaCount"] = want
    elif "pausedReplicaCount" in status:
        status.pop("pausedReplicaCount")
        want = minimum  # autoscaling resumes from the HPA's minimum
    if (
        workload is not None
        and res is not None
        and want is not None
        and (workload["spec"].get("replicas") != want)
    ):

        def scale(o: Obj, n: int = want) -> None:
            o["spec"]["replicas"] = n

        store.mutate(res, namespace, workload["metadata"]["name"], scale)
    old = {c["type"]: c for c in status.get("conditions") or []}
    paused_now = paused is not None
    conditions = [
        _condition(
            old,
            "Ready",
            workload is not None,
            "ScaledObjectReady" if workload is not None else "ScaledObjectCheckFailed",
        ),
        _condition(old, "Active", False, "ScalerNotActive"),
        _condition(
            old,
            "Paused",
            paused_now,
            "ScaledObjectPaused" if paused_now else "ScaledObjectUnpaused",
        ),
    ]
    status["conditions"] = conditions
    set_status(store, SCALEDOBJECTS, so, status)


def _condition(old: dict[str, Obj], kind: str, value: bool, reason: str) -> Obj:
    text = "True" if value else "False"
    prev = old.get(kind)
    if prev is not None and prev.get("status") == text and prev.get("reason") == reason:
        return prev
    return {
        "type": kind,
        "status": text,
        "reason": reason,
        "message": reason,
        "lastTransitionTime": now_iso(),
    }
