"""A minimal kube-scheduler: binds Pending pods to nodes by nodeName, nodeSelector, required node
affinity, taints and tolerations and resources (cpu, memory, pods, extended resources such as
`nvidia.com/gpu`); the rest stay Pending with the real PodScheduled reason and message."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from gpuherd.simcluster.resources import BY_KIND
from gpuherd.simcluster.store import Store, now_iso

Obj = dict[str, Any]
PODS, NODES = BY_KIND["Pod"], BY_KIND["Node"]
_SUFFIX = {
    "m": 0.001,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")
_AFFINITY = "node(s) didn't match Pod's node affinity/selector"


def quantity(value: Any) -> float:
    """A resource quantity (`500m`, `4Gi`, `2`) as a number of base units."""
    found = _QUANTITY.match(str(value).strip())
    if found is None or found.group(2) not in ("", *_SUFFIX):
        raise ValueError(f"quantities must match the regular expression: {value!r}")
    return float(found.group(1)) * _SUFFIX.get(found.group(2), 1)


def pod_requests(pod: Obj) -> Counter[str]:
    total: Counter[str] = Counter()
    for c in pod["spec"].get("containers") or []:
        res = c.get("resources") or {}
        wanted = {**(res.get("limits") or {}), **(res.get("requests") or {})}
        for name, value in wanted.items():
            total[name] += quantity(value)  # type: ignore[assignment]
    total["pods"] = 1
    return total


def is_active(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def _expression_ok(expr: Obj, labels: dict[str, str]) -> bool:  # noqa: PLR0911 - one per operator
    key, op, values = expr["key"], expr["operator"], expr.get("values") or []
    value = labels.get(key)
    if op == "In":
        return value in values
    if op == "NotIn":
        return value not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    try:
        if value is None:
            return False
        if op == "Gt":
            return int(value) > int(values[0])
        if op == "Lt":
            return int(value) < int(values[0])
    except ValueError:
        return False
    return False


def _term_ok(term: Obj, node: Obj) -> bool:
    labels = node["metadata"].get("labels") or {}
    fields = {"metadata.name": node["metadata"]["name"]}
    return all(_expression_ok(e, labels) for e in term.get("matchExpressions") or []) and all(
        _expression_ok(e, fields) for e in term.get("matchFields") or []
    )


def affinity_ok(pod: Obj, node: Obj) -> bool:
    labels = node["metadata"].get("labels") or {}
    spec = pod["spec"]
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if required is None:
        return True
    return any(_term_ok(t, node) for t in required.get("nodeSelectorTerms") or [])


def _tolerates(toleration: Obj, taint: Obj) -> bool:
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("operator") == "Exists":
        return not toleration.get("key") or toleration["key"] == taint["key"]
    return bool(
        toleration.get("key") == taint["key"]
        and toleration.get("value", "") == taint.get("value", "")
    )


def untolerated_taint(pod: Obj, node: Obj) -> Obj | None:
    tolerations = pod["spec"].get("tolerations") or []
    for taint in node["spec"].get("taints") or []:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if not any(_tolerates(t, taint) for t in tolerations):
            return dict(taint)
    return None


def _allocated(pods: list[Obj]) -> dict[str, Counter[str]]:
    used: dict[str, Counter[str]] = {}
    for pod in pods:
        node = pod["spec"].get("nodeName")
        if node and is_active(pod):
            used.setdefault(node, Counter()).update(pod_requests(pod))
    return used


def _misfit(pod: Obj, node: Obj, used: Counter[str]) -> list[str]:
    """Why `pod` cannot go to `node`; empty when it fits."""
    if node["spec"].get("unschedulable"):
        return ["node(s) were unschedulable"]
    if not affinity_ok(pod, node):
        return [_AFFINITY]
    taint = untolerated_taint(pod, node)
    if taint is not None:
        return [f"node(s) had untolerated taint {{{taint['key']}: {taint.get('value', '')}}}"]
    allocatable = node["status"].get("allocatable") or {}
    reasons = []
    for name, amount in sorted(pod_requests(pod).items()):
        have = quantity(allocatable.get(name, 0))
        if amount and used.get(name, 0) + amount > have:
            reasons.append("Too many pods" if name == "pods" else f"Insufficient {name}")
    return reasons


def _message(total: int, reasons: Counter[str], resource_misfits: int) -> str:
    listed = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
    other = total - resource_misfits
    preemption = []
    if other:
        preemption.append(f"{other} Preemption is not helpful for scheduling")
    if resource_misfits:
        preemption.append(f"{resource_misfits} No preemption victims found for incoming pod")
    return (
        f"0/{total} nodes are available: {listed}. preemption: 0/{total} nodes are "
        f"available: {', '.join(preemption)}."
    )


def _set_scheduled(pod: Obj, status: str, reason: str | None, message: str | None) -> None:
    conditions = [c for c in pod["status"].get("conditions") or [] if c["type"] != "PodScheduled"]
    old = next(
        (c for c in pod["status"].get("conditions") or [] if c["type"] == "PodScheduled"), None
    )
    cond: Obj = {
        "type": "PodScheduled",
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": old["lastTransitionTime"]
        if old and old["status"] == status
        else now_iso(),
    }
    if reason:
        cond.update(reason=reason, message=message)
    pod["status"]["conditions"] = [*conditions, cond]


def schedule(store: Store) -> None:
    """One pass: bind every Pending, unbound pod that fits somewhere."""
    pods, _ = store.list(PODS, borrow=True)
    nodes, _ = store.list(NODES, borrow=True)
    used = _allocated(pods)
    for pod in pods:
        meta, spec = pod["metadata"], pod["spec"]
        if spec.get("nodeName") or meta.get("deletionTimestamp") or not is_active(pod):
            continue
        if spec.get("schedulerName", "default-scheduler") != "default-scheduler":
            continue
        reasons: Counter[str] = Counter()
        feasible, resource_misfits = [], 0
        for node in nodes:
            why = _misfit(pod, node, used.get(node["metadata"]["name"], Counter()))
            if why:
                reasons.update(why)
                resource_misfits += any(w.startswith(("Insufficient", "Too many")) for w in why)
            else:
                feasible.append(node)
        if not feasible:
            message = _message(len(nodes), reasons, resource_misfits)

            def unschedulable(p: Obj, m: str = message) -> None:
                _set_scheduled(p, "False", "Unschedulable", m)

            store.mutate(PODS, meta["namespace"], meta["name"], unschedulable)
            continue
        # Spread: the node with the fewest pods bound (ties: the first in order).
        chosen = min(feasible, key=lambda n: used.get(n["metadata"]["name"], Counter())["pods"])
        name = chosen["metadata"]["name"]
        used.setdefault(name, Counter()).update(pod_requests(pod))

        def bind(p: Obj, node: str = name) -> None:
            p["spec"]["nodeName"] = node
            _set_scheduled(p, "True", None, None)

        store.mutate(PODS, meta["namespace"], meta["name"], bind)
