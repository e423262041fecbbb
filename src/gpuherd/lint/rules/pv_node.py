"""A pod pinned to one node cannot mount a local volume bound to another.

What it does: for pods pinned by `nodeName`, `nodeSelector` (resolved against the Nodes in the
input) or a required hostname affinity, follows each persistentVolumeClaim to its PV and
compares the PV's `nodeAffinity` hostnames. Also flags local StorageClasses (local-path,
no-provisioner, microk8s hostpath) that bind immediately instead of `WaitForFirstConsumer`.

Why it matters: local-path volumes live on one node. A GPU job pinned to the GPU node with its
data on the control-plane node stays Pending ("node(s) didn't match PersistentVolume's node
affinity"): why a render CronJob pinned to the GPU node never started.

Example:
    nodeSelector: {nvidia.com/gpu.present: "true"}   # matches k3s-gpu-01 only
    claimName: mapshot-data                          # PV pinned to k3s-cp-01

Fix: use a claim whose volume is on the GPU node, or network storage; give local StorageClasses
`volumeBindingMode: WaitForFirstConsumer`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gpuherd.lint.model import Problem, Severity
from gpuherd.lint.rules.api import Options, RuleOptions
from gpuherd.lint.rules.base import LintContext, finding
from gpuherd.lint.sources.access import as_dict, as_list, dig
from gpuherd.lint.sources.k8s import K8sObject

ID = "pv-node"
SEVERITY: Severity = "error"
OPTIONS: Options = {}
_HOST = "kubernetes.io/hostname"
_LOCAL = ("rancher.io/local-path", "kubernetes.io/no-provisioner", "microk8s.io/hostpath")


def _hostnames(terms: Any) -> set[str]:
    names: set[str] = set()
    for term in terms if isinstance(terms, list) else []:
        for expr in as_list(as_dict(term).get("matchExpressions")):
            if isinstance(expr, dict) and expr.get("key") == _HOST and expr.get("operator") == "In":
                names |= {str(v) for v in as_list(expr.get("values"))}
    return names


def _pinned_nodes(spec: dict[str, Any], nodes: list[K8sObject]) -> set[str] | None:
    """Names of the nodes this pod can run on, or None when it is not pinned or unknowable."""
    if spec.get("nodeName"):
        return {str(spec["nodeName"])}
    raw = spec.get("nodeSelector")
    selector: dict[str, Any] = raw if isinstance(raw, dict) else {}
    if _HOST in selector:
        return {str(selector[_HOST])}
    hosts = _hostnames(
        dig(
            spec,
            "affinity",
            "nodeAffinity",
            "requiredDuringSchedulingIgnoredDuringExecution",
            "nodeSelectorTerms",
        )
    )
    if hosts:
        return hosts
    if selector and nodes:
        return {
            n.name
            for n in nodes
            if all(
                str(as_dict(n.metadata.get("labels")).get(k)) == str(v) for k, v in selector.items()
            )
        }
    return None


def check(ctx: LintContext, options: RuleOptions) -> Iterator[Problem]:
    nodes = [o for o in ctx.objects if o.kind == "Node"]
    pvcs = {
        (o.namespace or "default", o.name): o
        for o in ctx.objects
        if o.kind == "PersistentVolumeClaim"
    }
    pvs = {o.name: o for o in ctx.objects if o.kind == "PersistentVolume"}
    for sc in (o for o in ctx.objects if o.kind == "StorageClass"):
        if (
            sc.data.get("provisioner") in _LOCAL
            and sc.data.get("volumeBindingMode", "Immediate") != "WaitForFirstConsumer"
        ):
            yield finding(
                sc,
                sc.value_pos("volumeBindingMode") if "volumeBindingMode" in sc.data else sc.start(),
                "local StorageClass binds volumes immediately: the volume lands on a node "
                "before the pod is scheduled, maybe not the GPU node",
                "set volumeBindingMode: WaitForFirstConsumer",
                severity="warning",
            )
    for obj in ctx.objects:
        found = obj.pod_spec()
        if found is None:
            continue
        path, spec = found
        allowed = _pinned_nodes(spec, nodes)
        if not allowed:
            continue
        for i, volume in enumerate(as_list(spec.get("volumes"))):
            claim = (
                (volume or {}).get("persistentVolumeClaim") if isinstance(volume, dict) else None
            )
            if not isinstance(claim, dict):
                continue
            pvc = pvcs.get((obj.namespace or "default", str(claim.get("claimName"))))
            pv = pvs.get(str(as_dict(pvc.data.get("spec")).get("volumeName"))) if pvc else None
            if pv is None or not ctx.same_project(obj.doc.source, pv.doc.source):
                continue
            hosts = _hostnames(
                dig(pv.data, "spec", "nodeAffinity", "required", "nodeSelectorTerms")
            )
            if hosts and not hosts & allowed:
                yield finding(
                    obj,
                    obj.value_pos(*path, "volumes", i, "persistentVolumeClaim", "claimName"),
                    f"claim {claim.get('claimName')} is bound to {pv.name} on "
                    f"{', '.join(sorted(hosts))}, but the pod can only run on "
                    f"{', '.join(sorted(allowed))}: it stays Pending"
                    + (
                        f" (PersistentVolume in {pv.doc.source})"
                        if pv.doc.source != obj.doc.source
                        else ""
                    ),
                    "use a claim whose volume is on that node, or network storage",
                )
