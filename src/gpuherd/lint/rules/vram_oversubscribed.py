"""Workloads sharing one GPU must not declare more VRAM than it has.

What it does: groups GPU workloads by the node they are pinned to (nodeName, or nodeSelector
kubernetes.io/hostname; or the only GPU node in the input), adds up the VRAM each declares
(`gpuherd.io/vram`, HAMi `nvidia.com/gpumem` / `gpumem-percentage`, KAI `gpu-memory` /
`gpu-fraction`, vLLM `--gpu-memory-utilization`, 0.9 when unset) times its replicas, and
compares the sum with the GPU's memory (the Node's `nvidia.com/gpu.memory` label, in MiB). Several
vLLM servers whose utilization fractions add up to more than 1.0 are an error even when the
GPU's size is unknown.

Why it matters: time-slicing shares compute, not memory; every process allocates from the same
VRAM and the last to start runs out of memory (Plex, Ollama, Whisper, TTS and vLLM: 18-24 GiB
of peaks on one 12 GiB card).
vLLM pre-allocates its fraction at start, so two servers at 0.7 can never both start.

Example:
    args: [--gpu-memory-utilization, "0.70"]     # and another vLLM at 0.5 on the same GPU

Fix: lower the fractions so they sum below 1 with room for the others (`gpuherd plan`
computes safe values), or move a workload to another GPU.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from gpuherd.lint.model import Problem, Severity
from gpuherd.lint.rules.api import Options, RuleOptions
from gpuherd.lint.rules.base import LintContext, finding, node_gpu_count
from gpuherd.lint.sources.access import as_dict
from gpuherd.lint.sources.k8s import K8sObject
from gpuherd.spec.from_k8s import MIB, VramClaim, workload_claim
from gpuherd.units import format_bytes

ID = "vram-oversubscribed"
SEVERITY: Severity = "error"
OPTIONS: Options = {}
_HOST = "kubernetes.io/hostname"


def _node_of(obj: K8sObject) -> str | None:
    found = obj.pod_spec()
    if found is None:
        return None
    spec = found[1]
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    host = as_dict(spec.get("nodeSelector")).get(_HOST)
    return str(host) if host is not None else None


_CLAIM_ANNOTATIONS = ("gpuherd.io/vram", "gpu-memory", "gpu-fraction")


def _claim(obj: K8sObject) -> VramClaim | None:
    found = obj.pod_spec()
    if found is None:
        return None
    annotations = obj.template_annotations()
    # Only GPU users declare VRAM; KAI's fractional pods request no GPU but carry annotations.
    if not obj.gpus and not any(a in annotations for a in _CLAIM_ANNOTATIONS):
        return None
    return workload_claim(annotations, [c.data for c in obj.containers if not c.init])


def _replicas(obj: K8sObject) -> int:
    value = as_dict(obj.data.get("spec")).get("replicas", 1)
    return value if isinstance(value, int) and value > 0 else 1


def _has_gpu(node: K8sObject) -> bool:
    return node_gpu_count(node) > 0 or "nvidia.com/gpu.memory" in as_dict(
        node.metadata.get("labels")
    )


def check(ctx: LintContext, options: RuleOptions) -> Iterator[Problem]:
    gpu_nodes = {o.name: o for o in ctx.objects if o.kind == "Node" and _has_gpu(o)}
    only = next(iter(gpu_nodes)) if len(gpu_nodes) == 1 else None
    groups: dict[str, list[tuple[K8sObject, VramClaim]]] = defaultdict(list)
    for obj in ctx.objects:
        claim = (
            _claim(obj) if obj.gpus or obj.kind in ("Deployment", "StatefulSet", "Pod") else None
        )
        if claim is None:
            continue
        node = _node_of(obj) or only
        if node is not None:
            groups[node].append((obj, claim))
    for node, members in groups.items():
        label = (
            as_dict(gpu_nodes[node].metadata.get("labels")).get("nvidia.com/gpu.memory")
            if node in gpu_nodes
            else None
        )
        total = int(float(label) * MIB) if label is not None and str(label).isdigit() else None
        vllm = [(o, c) for o, c in members if c.vllm and c.fraction is not None]
        fractions = sum((c.fraction or 0.0) * _replicas(o) for o, c in vllm)
        if len(vllm) > 1 and fractions > 1.0:
            obj, _c = vllm[-1]
            parts = ", ".join(f"{o.label} {c.fraction:g}" for o, c in vllm)
            yield finding(
                obj,
                obj.start(),
                f"vLLM servers on {node} pre-allocate {fractions:.2f} of the GPU together "
                f"({parts}): they cannot all start",
                "lower their --gpu-memory-utilization "
                "so the sum stays below 1 with room for the other tenants",
            )
            continue
        if total is None:
            continue
        resolved = [(o, c, c.resolve(total)) for o, c in members]
        declared = sum((b or 0) * _replicas(o) for o, _c, b in resolved)
        if declared > total:
            obj = resolved[-1][0]
            parts = ", ".join(f"{o.label} {format_bytes(b)}" for o, _c, b in resolved if b)
            yield finding(
                obj,
                obj.start(),
                f"workloads on {node} declare {format_bytes(declared)} of VRAM, the GPU "
                f"has {format_bytes(total)} ({parts}): the last to allocate runs out of "
                "memory",
                "lower the declared VRAM, or move a workload to another GPU "
                "(`gpuherd plan` shows what fits)",
            )
