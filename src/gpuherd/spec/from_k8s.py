"""VRAM a Kubernetes workload declares, from the conventions in use: gpuherd's own annotation,
HAMi and KAI requests, and vLLM's --gpu-memory-utilization. Works on plain manifest data, so
the linter's over-subscription rule and the planner's --from-k8s read workloads the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gpuherd.units import UnitError, parse_bytes

MIB = 1024**2
VLLM_DEFAULT_UTILIZATION = 0.9  # vLLM's default --gpu-memory-utilization

VRAM_ANNOTATION = "gpuherd.io/vram"
_UTIL_ARG = re.compile(r"--gpu[-_]memory[-_]utilization(?:=|\s+)([0-9.]+)")


@dataclass(frozen=True, slots=True)
class VramClaim:
    """Either absolute bytes or a fraction of the GPU, with where the number came from."""

    bytes: int | None
    fraction: float | None
    source: str
    vllm: bool = False

    def resolve(self, gpu_total: int | None) -> int | None:
        if self.bytes is not None:
            return self.bytes
        if self.fraction is None or gpu_total is None:
            return None
        return int(self.fraction * gpu_total)


def _number(value: Any) -> float | None:
    try:
        return float(str(value).strip().rstrip("%"))
    except ValueError:
        return None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def container_claim(container: dict[str, Any]) -> VramClaim | None:
    limits = _dict(_dict(container.get("resources")).get("limits"))
    mib = _number(limits.get("nvidia.com/gpumem", "x"))
    if mib is not None:
        return VramClaim(int(mib * MIB), None, f"nvidia.com/gpumem: {limits['nvidia.com/gpumem']}")
    pct = _number(limits.get("nvidia.com/gpumem-percentage", "x"))
    if pct is not None:
        return VramClaim(None, pct / 100.0, f"nvidia.com/gpumem-percentage: {pct:g}")
    words = [str(v) for key in ("command", "args") for v in _list(container.get(key))]
    if "vllm" not in " ".join([str(container.get("image", "")), *words]).lower():
        return None
    match = _UTIL_ARG.search(" ".join(words))
    utilization = _number(match.group(1)) if match else None
    if utilization is None:
        return VramClaim(
            None, VLLM_DEFAULT_UTILIZATION, "vLLM default --gpu-memory-utilization 0.9", vllm=True
        )
    return VramClaim(None, utilization, f"--gpu-memory-utilization {utilization:g}", vllm=True)


def annotation_claim(annotations: dict[str, Any]) -> VramClaim | None:
    """gpuherd's own annotation, else KAI's gpu-memory (MiB) or gpu-fraction."""
    if VRAM_ANNOTATION in annotations:
        try:
            size = parse_bytes(annotations[VRAM_ANNOTATION])
        except UnitError:
            return None
        return VramClaim(size, None, f"{VRAM_ANNOTATION}: {annotations[VRAM_ANNOTATION]}")
    mib = _number(annotations.get("gpu-memory", "x"))
    if mib is not None:
        return VramClaim(int(mib * MIB), None, f"gpu-memory: {annotations['gpu-memory']}")
    frac = _number(annotations.get("gpu-fraction", "x"))
    if frac is not None:
        return VramClaim(None, frac, f"gpu-fraction: {annotations['gpu-fraction']}")
    return None


def workload_claim(
    annotations: dict[str, Any], containers: list[dict[str, Any]]
) -> VramClaim | None:
    """The pod's declared VRAM: an explicit annotation wins, then per-container conventions."""
    explicit = annotation_claim(annotations)
    if explicit is not None:
        return explicit
    claims = [c for c in (container_claim(c) for c in containers) if c is not None]
    if len(claims) <= 1:
        return claims[0] if claims else None
    total_bytes = sum(c.bytes or 0 for c in claims)
    total_fraction = sum(c.fraction or 0.0 for c in claims)
    return VramClaim(
        total_bytes or None,
        total_fraction or None,
        "; ".join(c.source for c in claims),
        vllm=any(c.vllm for c in claims),
    )


# --- tenants and GPUs from manifests (gpuherd plan --from-k8s) --------------------------------

# Where each workload kind keeps its pod spec; the linter walks the same table.
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
_ACTIVE_PART = re.compile(r"^\s*(?P<cron>.+?)\s+for\s+(?P<dur>\S+)\s*$")


def _dig(data: Any, *path: str) -> Any:
    for step in path:
        if not isinstance(data, dict):
            return None
        data = data.get(step)
    return data


def parse_active(text: str) -> list[dict[str, str]] | str:
    """`always`, or windows written `0 18 * * * for 5h; 0 8 * * 1-5 for 10h`."""
    if text.strip() in ("", "always"):
        return "always"
    windows = []
    for part in text.split(";"):
        match = _ACTIVE_PART.match(part)
        if match is None:
            raise ValueError(f"gpuherd.io/active: expected 'CRON for DURATION', got {part!r}")
        windows.append({"cron": match.group("cron"), "for": match.group("dur")})
    return windows


def tenants_from_manifests(docs: list[Any], gpu_by_node: dict[str, str]) -> dict[str, Any]:
    """Raw tenant entries (validated later by the Config model) for GPU workloads in `docs`."""
    tenants: dict[str, Any] = {}
    for doc in docs:
        if not isinstance(doc, dict) or doc.get("kind") not in POD_SPEC_PATHS:
            continue
        spec = _dig(doc, *POD_SPEC_PATHS[doc["kind"]])
        if not isinstance(spec, dict):
            continue
        meta = _dict(doc.get("metadata"))
        template_meta = _dig(doc, *POD_SPEC_PATHS[doc["kind"]][:-1], "metadata")
        annotations = {
            **_dict(meta.get("annotations")),
            **_dict(_dict(template_meta).get("annotations")),
        }
        claim = workload_claim(
            annotations, [c for c in _list(spec.get("containers")) if isinstance(c, dict)]
        )
        if claim is None:
            continue
        name = str(meta.get("name", "workload"))
        if name in tenants:
            name = f"{meta.get('namespace', 'default')}.{name}"
        node = spec.get("nodeName") or _dict(spec.get("nodeSelector")).get("kubernetes.io/hostname")
        vram: Any = claim.bytes if claim.bytes is not None else {"fraction": claim.fraction}
        entry: dict[str, Any] = {
            "vram": vram,
            "priority": int(str(annotations.get("gpuherd.io/priority", "0"))),
            "active": parse_active(str(annotations.get("gpuherd.io/active", "always"))),
        }
        if claim.vllm:
            entry["app"] = "vllm"
        if node is not None and str(node) in gpu_by_node:
            entry["gpu"] = gpu_by_node[str(node)]
        elif node is not None:
            entry["node"] = str(node)
        tenants[name] = entry
    return tenants


def node_gpu_capacity(doc: dict[str, Any]) -> int:
    """`nvidia.com/gpu` (or `.shared`) in a Node's status capacity: GPUs x time-slicing replicas."""
    capacity = _dict(_dict(doc.get("status")).get("capacity"))
    return max(
        (
            int(_number(capacity.get(name, "x")) or 0)
            for name in ("nvidia.com/gpu", "nvidia.com/gpu.shared")
        ),
        default=0,
    )


def gpus_from_nodes(docs: list[Any]) -> list[dict[str, Any]]:
    """GPUs of Node objects labelled by GPU feature discovery (memory in MiB, replicas); the
    count from `nvidia.com/gpu.count`, else the capacity divided by the replicas."""
    gpus = []
    for doc in docs:
        if not isinstance(doc, dict) or doc.get("kind") != "Node":
            continue
        labels = _dict(_dict(doc.get("metadata")).get("labels"))
        memory = _number(labels.get("nvidia.com/gpu.memory", "x"))
        if memory is None:
            continue
        name = str(_dict(doc.get("metadata")).get("name", "node"))
        shares = int(_number(labels.get("nvidia.com/gpu.replicas", "1")) or 1)
        counted = _number(labels.get("nvidia.com/gpu.count", "x"))
        count = int(counted or 0) or node_gpu_capacity(doc) // max(shares, 1) or 1
        for index in range(count):
            gpus.append(
                {
                    "name": name if count == 1 else f"{name}-{index}",
                    "node": name,
                    "index": index,
                    "model": str(labels.get("nvidia.com/gpu.product", "")) or None,
                    "memory": int(memory * MIB),
                    "shares": max(shares, 1),
                }
            )
    return gpus
