"""The scheduler: nodeName, nodeSelector, required node affinity, taints and tolerations,
GPU capacity and time-sliced shares; unschedulable pods carry the real reason and message."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from gpuherd.simcluster import NodeSpec
from tests.simcluster.conftest import Kube, start_cluster, wait_for


def pod(name: str, *, gpus: int = 0, **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "c", "image": "x", "command": ["sleep", "60"]}
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    return {
        "metadata": {"name": name},
        "spec": {"containers": [container], "terminationGracePeriodSeconds": 1, **spec},
    }


def scheduled(kube: Kube, name: str) -> tuple[str | None, Any]:
    def check() -> tuple[str | None, Any] | None:
        got = kube.core.read_namespaced_pod(name, "default")
        cond = [c for c in got.status.conditions or [] if c.type == "PodScheduled"]
        return (got.spec.node_name, cond[0]) if cond else None

    return wait_for(check, what=f"{name} scheduled or not")


def test_gpu_capacity_and_the_unschedulable_message(kube: Kube) -> None:
    kube.core.create_namespaced_pod("default", pod("a", gpus=1))
    kube.core.create_namespaced_pod("default", pod("b", gpus=1))
    nodes = {scheduled(kube, "a")[0], scheduled(kube, "b")[0]}
    assert nodes == {"k3s-cp-01", "k3s-gpu-02"}
    kube.core.create_namespaced_pod("default", pod("c", gpus=1))
    node, cond = scheduled(kube, "c")
    assert node is None
    assert (cond.status, cond.reason) == ("False", "Unschedulable")
    assert cond.message == (
        "0/2 nodes are available: 2 Insufficient nvidia.com/gpu. preemption: 0/2 nodes are "
        "available: 2 No preemption victims found for incoming pod."
    )
    assert kube.core.read_namespaced_pod("c", "default").status.phase == "Pending"
    kube.core.delete_namespaced_pod("a", "default")
    node = wait_for(
        lambda: kube.core.read_namespaced_pod("c", "default").spec.node_name,
        what="c bound once a GPU is free",
    )
    assert node in {"k3s-cp-01", "k3s-gpu-02"}


def test_selector_affinity_and_taints(kube: Kube) -> None:
    kube.core.patch_node(
        "k3s-gpu-02",
        {
            "spec": {
                "taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
            }
        },
    )
    kube.core.create_namespaced_pod(
        "default",
        pod("picky", nodeSelector={"nvidia.com/gpu.product": "NVIDIA-RTX-4000-Ada-Generation"}),
    )
    node, cond = scheduled(kube, "picky")
    assert node is None
    assert cond.message.startswith(
        "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, "
        "1 node(s) had untolerated taint {nvidia.com/gpu: present}."
    )
    kube.core.create_namespaced_pod(
        "default",
        pod(
            "tolerant",
            nodeSelector={"nvidia.com/gpu.product": "NVIDIA-RTX-4000-Ada-Generation"},
            tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        ),
    )
    assert scheduled(kube, "tolerant")[0] == "k3s-gpu-02"
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": "nvidia.com/gpu.memory", "operator": "Gt", "values": ["16000"]}
                        ]
                    }
                ]
            }
        }
    }
    kube.core.create_namespaced_pod("default", pod("big-card", affinity=affinity))
    node, cond = scheduled(kube, "big-card")
    assert node is None  # the 20 GiB card is on the tainted node
    kube.core.create_namespaced_pod("default", pod("pinned", nodeName="k3s-gpu-02"))
    assert scheduled(kube, "pinned")[0] == "k3s-gpu-02"  # nodeName skips the scheduler


def _running(kube: Kube, name: str) -> Any:
    pod = kube.core.read_namespaced_pod(name, "default")
    return pod if pod.status.phase == "Running" else None


@pytest.fixture
def shared(tmp_path: Path, sim_dir: Path) -> Iterator[Kube]:
    yield from start_cluster(tmp_path, sim_dir, [NodeSpec("k3s-cp-01", (0,), replicas=2)])


def test_time_sliced_shares(shared: Kube) -> None:
    node = shared.core.read_node("k3s-cp-01")
    assert node.status.capacity["nvidia.com/gpu"] == "2"
    assert node.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-GeForce-RTX-3080-Ti-SHARED"
    assert node.metadata.labels["nvidia.com/gpu.replicas"] == "2"
    for name in ("x", "y", "z"):
        shared.core.create_namespaced_pod("default", pod(name, gpus=1))
    assert scheduled(shared, "x")[0] == "k3s-cp-01"
    assert scheduled(shared, "y")[0] == "k3s-cp-01"
    node_name, cond = scheduled(shared, "z")
    assert node_name is None
    assert cond.message.startswith("0/1 nodes are available: 1 Insufficient nvidia.com/gpu.")
    for name in ("x", "y"):
        running = wait_for(
            partial(_running, shared, name),
            what=f"{name} running",
        )
        env = shared.cluster.kubelets["k3s-cp-01"].runs[running.metadata.uid].containers["c"].env
        assert env["CUDA_VISIBLE_DEVICES"] == "0"  # both share GPU 0


def test_a_pod_pinned_past_the_gpu_capacity_is_rejected_by_the_kubelet(kube: Kube) -> None:
    kube.core.create_namespaced_pod("default", pod("greedy", gpus=2, nodeName="k3s-cp-01"))
    got = wait_for(
        lambda: [
            p
            for p in [kube.core.read_namespaced_pod("greedy", "default")]
            if p.status.phase == "Failed"
        ],
        what="rejected",
    )[0]
    assert got.status.reason == "OutOfnvidia.com/gpu"
    assert got.status.message == (
        "Pod was rejected: Node didn't have enough resource: nvidia.com/gpu, requested: 2, "
        "used: 0, capacity: 1"
    )
