"""GPU pods must tolerate the taints of the GPU nodes.

What it does: for Nodes in the input that have GPUs (capacity or the `nvidia.com/gpu.present`
label) and NoSchedule/NoExecute taints, flags GPU pods, and DaemonSets pinned to GPU nodes (by
`nodeSelector` or required `nodeAffinity` on an `nvidia.com/gpu*` label),
whose tolerations do not cover every taint. Under the gke profile, GPU nodes carry
`nvidia.com/gpu=present:NoSchedule`; GPU-requesting pods get the toleration automatically
there, DaemonSets selected onto GPU nodes do not. Under the aks profile GPU pools carry
`sku=gpu:NoSchedule`, which every GPU pod must tolerate.

Why it matters: the pod stays Pending ("had untolerated taint").

Example:
    taints: [{key: dedicated, value: gpu, effect: NoSchedule}]   # on the GPU node

Fix: add a matching toleration to the pod spec.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gpuherd.lint.model import Problem, Severity
from gpuherd.lint.rules.api import Options, RuleOptions
from gpuherd.lint.rules.base import LintContext, finding, node_gpu_count, pod_gpus
from gpuherd.lint.rules.sharing import node_labels_selected
from gpuherd.lint.sources.access import as_dict, as_list
from gpuherd.lint.sources.k8s import K8sObject

ID = "gpu-toleration"
SEVERITY: Severity = "warning"
OPTIONS: Options = {}
_GKE_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
# AKS documents tainting GPU node pools with sku=gpu:NoSchedule; no admission plugin adds the
# toleration there, so GPU pods need it too.
_AKS_TAINT = {"key": "sku", "value": "gpu", "effect": "NoSchedule"}


def _tolerates(tolerations: list[Any], taint: dict[str, Any]) -> bool:
    for t in tolerations:
        if not isinstance(t, dict):
            continue
        if t.get("effect") and t.get("effect") != taint.get("effect"):
            continue
        if t.get("operator") == "Exists":
            if t.get("key") in (None, "", taint.get("key")):
                return True
        elif t.get("key") == taint.get("key") and str(t.get("value", "")) == str(
            taint.get("value", "")
        ):
            return True
    return False


def _gpu_node(node: K8sObject) -> bool:
    labels = as_dict(node.metadata.get("labels"))
    return node_gpu_count(node) > 0 or str(labels.get("nvidia.com/gpu.present")) == "true"


def _selects_gpu_nodes(spec: dict[str, Any]) -> bool:
    """nodeSelector or required nodeAffinity on a GPU label (nvidia.com/gpu.present, ...)."""
    return any("nvidia.com/gpu" in k for k in node_labels_selected(spec))


def check(ctx: LintContext, options: RuleOptions) -> Iterator[Problem]:
    taints: list[tuple[dict[str, Any], str]] = []  # (taint, file of its Node)
    for node in (o for o in ctx.objects if o.kind == "Node" and _gpu_node(o)):
        spec = as_dict(node.data.get("spec"))
        for taint in as_list(spec.get("taints")):
            if (
                isinstance(taint, dict)
                and taint.get("effect") in ("NoSchedule", "NoExecute")
                and (taint, node.doc.source) not in taints
            ):
                taints.append((taint, node.doc.source))
    profile_taints = [_GKE_TAINT] if ctx.profile == "gke" else []
    aks = [_AKS_TAINT] if ctx.profile == "aks" else []
    for obj in ctx.objects:
        found = obj.pod_spec()
        if found is None:
            continue
        path, spec = found
        wants_gpu = pod_gpus(obj) > 0
        pinned_daemon = obj.kind == "DaemonSet" and _selects_gpu_nodes(spec)
        if not (wants_gpu or pinned_daemon):
            continue
        nearby: list[dict[str, Any]] = []
        for taint, source in taints:
            if ctx.same_project(obj.doc.source, source) and taint not in nearby:
                nearby.append(taint)
        relevant = nearby + aks + (profile_taints if pinned_daemon and not wants_gpu else [])
        tolerations = as_list(spec.get("tolerations"))
        for taint in relevant:
            if _tolerates(tolerations, taint):
                continue
            text = f"{taint.get('key')}={taint.get('value', '')}:{taint.get('effect')}"
            yield finding(
                obj,
                obj.value_pos(*path),
                f"no toleration for the GPU node taint {text}: the pod cannot schedule there",
                f"add tolerations: [{{key: {taint.get('key')}, operator: Equal, "
                f"value: {taint.get('value', '')}, effect: {taint.get('effect')}}}]",
            )
