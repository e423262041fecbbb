"""Plain-data form of a snapshot with its attribution: the `gpus --json` schema (version 1)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpuherd.gpu.attribution import Attributed
from gpuherd.gpu.base import GpuSnapshot

SCHEMA_VERSION = 1


def snapshot_dict(
    snapshot: GpuSnapshot,
    attributed: tuple[Attributed, ...],
    *,
    gpu_names: Mapping[int, str] | None = None,
) -> dict[str, Any]:
    """Bytes are integers, unknown values null; `pod` is `namespace/name`, else the pod UID."""
    by_gpu: dict[int, list[dict[str, Any]]] = {}
    for item in attributed:
        proc, origin = item.process, item.origin
        pod = f"{item.pod.namespace}/{item.pod.name}" if item.pod else origin.pod_uid
        by_gpu.setdefault(proc.gpu_index, []).append(
            {
                "pid": proc.pid,
                "used_bytes": proc.used_bytes,
                "name": proc.name,
                "kind": proc.kind,
                "tenant": item.tenant,
                "container": origin.container_id,
                "runtime": origin.runtime,
                "pod": pod,
                "qos": origin.qos,
                "systemd_unit": origin.systemd_unit,
                "cmdline": list(proc.cmdline) if proc.cmdline is not None else None,
            }
        )
    names = gpu_names or {}
    return {
        "version": SCHEMA_VERSION,
        "backend": snapshot.backend,
        "taken_at": snapshot.taken_at,
        "driver_version": snapshot.driver_version,
        "cuda_version": snapshot.cuda_version,
        "gpus": [
            {
                "index": dev.index,
                "uuid": dev.uuid,
                "name": dev.name,
                "config_name": names.get(dev.index),
                "memory": {
                    "total": dev.memory_total,
                    "used": dev.memory_used,
                    "free": dev.memory_free,
                    "reserved": dev.memory_reserved,
                },
                "utilization": dev.utilization,
                "temperature": dev.temperature,
                "processes": by_gpu.get(dev.index, []),
            }
            for dev in snapshot.devices
        ],
    }
