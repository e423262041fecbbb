"""GPU infrastructure: the pods that must see every GPU of their node (not applications).

The device plugin and its MPS control daemon, GPU feature discovery, the DCGM exporter, the GPU
Operator's validators, driver and toolkit containers, HAMi: they set NVIDIA_VISIBLE_DEVICES=all
and run privileged on purpose. Recognised by their images, by the device-plugin socket directory
they mount, and by the labels their charts and the operator put on them.
"""

from __future__ import annotations

import re
from typing import Any

from gpuherd.lint.sources.access import as_dict, as_list
from gpuherd.lint.sources.k8s import Container, K8sObject

_IMAGES = re.compile(
    r"(nvcr\.io/nvidia/(k8s-device-plugin|k8s/|cloud-native/|gpu-operator|driver|"
    r"gpu-feature-discovery|container-toolkit|dcgm)|k8s-device-plugin|gpu-feature-discovery|"
    r"dcgm-exporter|k8s-mig-manager|container-toolkit|gpu-operator|nvidia-driver|"
    r"projecthami/|/k8s-vgpu|kai-scheduler|/hami:)"
)
_SOCKETS = "/var/lib/kubelet/device-plugins"
_OPERATOR_PARTS = ("gpu-operator", "nvidia-gpu-operator")


def _labels(obj: K8sObject) -> dict[str, Any]:
    labels = dict(as_dict(obj.metadata.get("labels")))
    found = obj.pod_spec()
    if found is not None:
        template: Any = obj.data
        for step in found[0][:-1]:
            template = template.get(step) if isinstance(template, dict) else None
        meta = as_dict(template).get("metadata") if isinstance(template, dict) else None
        labels.update(as_dict(as_dict(meta).get("labels")))
    return labels


def _mounts_sockets(spec: dict[str, Any]) -> bool:
    return any(
        str(as_dict(as_dict(v).get("hostPath")).get("path", "")).startswith(_SOCKETS)
        for v in as_list(spec.get("volumes"))
    )


def is_gpu_infrastructure(container: Container) -> bool:
    """Whether this container belongs to NVIDIA's (or HAMi's) node-level GPU software."""
    if _IMAGES.search(str(container.data.get("image", ""))):
        return True
    obj = container.obj
    labels = _labels(obj)
    if str(labels.get("app.kubernetes.io/part-of", "")) in _OPERATOR_PARTS:
        return True
    if any(str(labels.get(k, "")).startswith("nvidia-") for k in ("app", "app.kubernetes.io/name")):
        return True
    found = obj.pod_spec()
    return obj.kind == "DaemonSet" and found is not None and _mounts_sockets(found[1])
