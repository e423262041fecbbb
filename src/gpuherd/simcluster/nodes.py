"""Node objects for the simulated GPUs: capacity `nvidia.com/gpu` and the labels the NVIDIA
device plugin and GPU Feature Discovery set, as on a k3s node."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gpuherd.gpu.base import GpuDevice

Obj = dict[str, Any]
GPU = "nvidia.com/gpu"
KUBELET_VERSION = "v1.33.6+k3s1"


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """A node: its name, which simulated GPUs it owns, and time-slicing replicas per GPU."""

    name: str
    gpus: tuple[int, ...] = ()
    replicas: int = 1  # >1: the device plugin's time-slicing, capacity = GPUs x replicas
    labels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, *, replicas: int = 1) -> NodeSpec:
        """NAME[:GPU_INDEX[,GPU_INDEX]] as given to `gpuherd sim cluster up --node`."""
        name, sep, indices = text.partition(":")
        if not name or not _dns_label(name):
            raise ValueError(f"--node {text!r}: the name must be a DNS label (a-z, 0-9, '-')")
        gpus: tuple[int, ...] = ()
        if sep:
            try:
                gpus = tuple(int(i) for i in indices.split(",") if i.strip())
            except ValueError:
                raise ValueError(
                    f"--node {text!r}: GPU indices must be integers, e.g. {name}:0,1"
                ) from None
        return cls(name, gpus, replicas)


def _dns_label(name: str) -> bool:
    ok = all(c.islower() or c.isdigit() or c == "-" for c in name)
    return ok and len(name) <= 63 and name[0].isalnum() and name[-1].isalnum()


def node_ip(index: int) -> str:
    return f"127.0.{index + 1}.1"


def gpu_labels(spec: NodeSpec, devices: list[GpuDevice]) -> dict[str, str]:
    if not devices:
        return {}
    first = devices[0]
    product = first.name.replace(" ", "-")
    shared = spec.replicas > 1
    return {
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.count": str(len(devices)),
        "nvidia.com/gpu.product": f"{product}-SHARED" if shared else product,
        "nvidia.com/gpu.memory": str(first.memory_total // (1024 * 1024)),
        "nvidia.com/gpu.replicas": str(spec.replicas),
        "nvidia.com/gpu.sharing-strategy": "time-slicing" if shared else "none",
        "nvidia.com/gpu.deploy.device-plugin": "true",
        "nvidia.com/cuda.driver.major": "550",
        "nvidia.com/mig.capable": "false",
    }


def node_object(spec: NodeSpec, index: int, devices: list[GpuDevice]) -> Obj:
    ip = node_ip(index)
    labels = {
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/instance-type": "k3s",
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": spec.name,
        "kubernetes.io/os": "linux",
        "node.kubernetes.io/instance-type": "k3s",
        **gpu_labels(spec, devices),
        **spec.labels,
    }
    if index == 0:
        labels["node-role.kubernetes.io/control-plane"] = "true"
        labels["node-role.kubernetes.io/master"] = "true"
    capacity = {
        "cpu": "16",
        "ephemeral-storage": "488245288Ki",
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
        "memory": "65843004Ki",
        "pods": "110",
    }
    if devices:
        capacity[GPU] = str(len(devices) * spec.replicas)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": spec.name,
            "labels": labels,
            "annotations": {
                "k3s.io/hostname": spec.name,
                "k3s.io/internal-ip": ip,
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": {
            "podCIDR": f"10.42.{index}.0/24",
            "podCIDRs": [f"10.42.{index}.0/24"],
            "providerID": f"k3s://{spec.name}",
        },
        "status": {
            "capacity": capacity,
            "allocatable": dict(capacity),
            "conditions": [
                _condition(t, "False", r, m)
                for t, r, m in (
                    (
                        "MemoryPressure",
                        "KubeletHasSufficientMemory",
                        "kubelet has sufficient memory available",
                    ),
                    ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                    (
                        "PIDPressure",
                        "KubeletHasSufficientPID",
                        "kubelet has sufficient PID available",
                    ),
                )
            ]
            + [_condition("Ready", "True", "KubeletReady", "kubelet is posting ready status")],
            "addresses": [
                {"address": ip, "type": "InternalIP"},
                {"address": spec.name, "type": "Hostname"},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": "00000000-0000-0000-0000-000000000000",
                "containerRuntimeVersion": "containerd://2.0.5-k3s1",
                "kernelVersion": "6.1.0",
                "kubeProxyVersion": KUBELET_VERSION,
                "kubeletVersion": KUBELET_VERSION,
                "machineID": spec.name,
                "operatingSystem": "linux",
                "osImage": "gpuherd simulated node",
                "systemUUID": spec.name,
            },
        },
    }


def _condition(kind: str, status: str, reason: str, message: str) -> Obj:
    from gpuherd.simcluster.store import now_iso

    stamp = now_iso()
    return {
        "type": kind,
        "status": status,
        "lastHeartbeatTime": stamp,
        "lastTransitionTime": stamp,
        "reason": reason,
        "message": message,
    }
