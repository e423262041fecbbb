"""Checks on a Job before any tenant is released for it: every PersistentVolumeClaim its pods
mount must be bound to a volume this node can reach. A local-path volume pinned to another node
leaves the pod Pending forever after the tenants were already scaled away: the nightly render
that never ran and left Ollama down."""

from __future__ import annotations

from typing import Any

from gpuherd.k8s.client import KubeClient, NotFound

Obj = dict[str, Any]


def _nodes_allowed(pv: Obj, labels: dict[str, str]) -> tuple[bool, list[str]]:
    """Whether the volume's required node affinity admits a node with `labels`, and the
    hostnames it names (for the message)."""
    terms = (((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required") or {}).get(
        "nodeSelectorTerms"
    ) or []
    if not terms:
        return True, []
    named: list[str] = []
    ok = False
    for term in terms:
        term_ok = True
        for expr in term.get("matchExpressions") or []:
            key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
            if key == "kubernetes.io/hostname":
                named.extend(values)
            have = labels.get(key)
            if (
                (op == "In" and have not in values)
                or (op == "NotIn" and have in values)
                or (op == "Exists" and have is None)
                or (op == "DoesNotExist" and have is not None)
            ):
                term_ok = False
        ok = ok or term_ok
    return ok, named


def job_volumes(client: KubeClient, job: Obj, node: str, node_labels: dict[str, str]) -> list[str]:
    """Why the Job cannot run on `node` because of its volumes; empty when it can."""
    namespace = job["metadata"]["namespace"]
    spec = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    problems = []
    for volume in spec.get("volumes") or []:
        claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
        if not claim:
            continue
        try:
            pvc = client.get_pvc(namespace, claim)
        except NotFound:
            problems.append(f"claim {claim} does not exist")
            continue
        bound = (pvc.get("spec") or {}).get("volumeName")
        if not bound:
            continue  # WaitForFirstConsumer: it will be provisioned where the pod lands
        try:
            pv = client.get_pv(bound)
        except NotFound:
            problems.append(f"claim {claim} is bound to volume {bound}, which does not exist")
            continue
        ok, named = _nodes_allowed(pv, node_labels)
        if not ok:
            where = ", ".join(named) or "other nodes"
            problems.append(f"claim {claim} is bound to a volume on {where}, not on {node}")
    return problems
