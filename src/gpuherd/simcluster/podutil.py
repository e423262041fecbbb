"""Pod facts the controllers share: ownership, readiness, creation from a template, deletion."""

from __future__ import annotations

import contextlib
import copy
from typing import Any

from gpuherd.simcluster import defaults, errors
from gpuherd.simcluster.resources import BY_KIND, Resource
from gpuherd.simcluster.store import Store

Obj = dict[str, Any]
PODS = BY_KIND["Pod"]


def owner_ref(owner: Obj) -> Obj:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controller_uid(obj: Obj) -> str | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref["uid"])
    return None


Children = dict[str, list[Obj]]  # controller uid -> the objects it controls


def by_owner(*groups: list[Obj]) -> Children:
    """Index objects by their controller's uid, once per controller pass."""
    index: Children = {}
    for objects in groups:
        for obj in objects:
            uid = controller_uid(obj)
            if uid is not None:
                index.setdefault(uid, []).append(obj)
    return index


def owned(children: Children, owner: Obj) -> list[Obj]:
    return children.get(owner["metadata"]["uid"], [])


def phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase", "Pending"))


def terminating(pod: Obj) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def ready(pod: Obj) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def create_pod(
    store: Store, owner: Obj, *, name: str | None = None, extra_labels: dict[str, str] | None = None
) -> Obj:
    template = copy.deepcopy(owner["spec"]["template"])
    meta = template.get("metadata") or {}
    meta.pop("creationTimestamp", None)
    meta["namespace"] = owner["metadata"]["namespace"]
    meta.setdefault("labels", {}).update(extra_labels or {})
    if name:
        meta["name"] = name
    else:
        meta["generateName"] = f"{owner['metadata']['name']}-"
    meta["ownerReferences"] = [owner_ref(owner)]
    pod: Obj = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"]}
    defaults.apply(pod)
    return store.create(PODS, pod, meta["namespace"])


def delete_pod(store: Store, pod: Obj) -> None:
    """As a controller deletes: graceful for a pod a kubelet runs, at once otherwise."""
    meta = pod["metadata"]
    try:
        if pod["spec"].get("nodeName") and phase(pod) not in ("Succeeded", "Failed"):
            grace = int(pod["spec"].get("terminationGracePeriodSeconds", 30))
            store.mark_deleting(PODS, meta["namespace"], meta["name"], grace)
        else:
            store.remove(PODS, meta["namespace"], meta["name"])
    except errors.ApiError:
        pass  # gone already


def set_status(store: Store, res: Resource, obj: Obj, status: Obj) -> None:
    if obj.get("status") == status:
        return

    def change(o: Obj) -> None:
        o["status"] = status

    with contextlib.suppress(errors.ApiError):
        store.mutate(res, obj["metadata"].get("namespace", ""), obj["metadata"]["name"], change)
