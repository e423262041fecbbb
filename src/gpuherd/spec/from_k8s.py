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
