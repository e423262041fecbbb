"""Deployments, ReplicaSets and StatefulSets driving real pod processes on simulated GPUs."""

from __future__ import annotations

import sys
from pathlib import Path

from gpuherd.gpu.sim import SimHost
from tests.simcluster.conftest import Kube, deployment, wait_for

GIB = 1024**3


def _hold(vram: str, name: str) -> list[str]:
    # $(CUDA_VISIBLE_DEVICES) expands to the GPU the device plugin allocated to the pod.
    return [
        sys.executable,
        "-m",
        "gpuherd",
        "sim",
        "hold",
        "--gpu",
        "$(CUDA_VISIBLE_DEVICES)",
        "--vram",
        vram,
        "--name",
        name,
    ]


def _used(sim_dir: Path, gpu: int) -> int:
    with SimHost(sim_dir) as host:
        return next(d.memory_used for d in host.snapshot().devices if d.index == gpu)


def test_deployment_scales_to_zero_and_back_freeing_vram(kube: Kube, sim_dir: Path) -> None:
    body = deployment("ollama", _hold("4GiB", "ollama"), gpus=1)
    body["spec"]["template"]["spec"]["nodeSelector"] = {"kubernetes.io/hostname": "k3s-cp-01"}
    kube.apps.create_namespaced_deployment("default", body)
    [pod] = kube.running("app=ollama", 1)
    assert pod.spec.node_name == "k3s-cp-01"
    wait_for(lambda: _used(sim_dir, 0) == 4 * GIB, what="4 GiB held on GPU 0")
    deploy = wait_for(
        lambda: [
            d
            for d in [kube.apps.read_namespaced_deployment("ollama", "default")]
            if d.status.ready_replicas == 1
        ],
        what="ready deployment",
    )[0]
    assert deploy.status.available_replicas == 1
    kube.apps.patch_namespaced_deployment_scale("ollama", "default", {"spec": {"replicas": 0}})
    wait_for(lambda: not kube.pods("app=ollama"), what="pods gone")
    assert _used(sim_dir, 0) == 0
    kube.apps.patch_namespaced_deployment_scale("ollama", "default", {"spec": {"replicas": 1}})
    [back] = kube.running("app=ollama", 1)
    assert back.metadata.uid != pod.metadata.uid
    wait_for(lambda: _used(sim_dir, 0) == 4 * GIB, what="VRAM held again")


def test_scale_down_deletes_the_pod_with_the_lowest_deletion_cost(kube: Kube) -> None:
    kube.apps.create_namespaced_deployment(
        "default", deployment("web", ["sleep", "60"], replicas=3)
    )
    pods = kube.running("app=web", 3)
    keep = {p.metadata.name for p in pods[:2]}
    victim = pods[2].metadata.name
    for i, pod in enumerate(pods):
        cost = "-100" if pod.metadata.name == victim else str(100 + i)
        kube.core.patch_namespaced_pod(
            pod.metadata.name,
            "default",
            {"metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": cost}}},
        )
    kube.apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 2}})
    left = wait_for(
        lambda: [p for p in [kube.pods("app=web")] if len(p) == 2], what="two pods left"
    )[0]
    assert {p.metadata.name for p in left} == keep


def test_deleting_a_deployment_removes_its_replicaset_and_pods(kube: Kube) -> None:
    kube.apps.create_namespaced_deployment("default", deployment("tts", ["sleep", "60"]))
    kube.running("app=tts", 1)
    [rs] = kube.apps.list_namespaced_replica_set("default").items
    assert rs.metadata.owner_references[0].kind == "Deployment"
    assert rs.metadata.labels["pod-template-hash"]
    kube.apps.delete_namespaced_deployment("tts", "default")
    wait_for(lambda: not kube.pods("app=tts"), what="pods collected")
    assert kube.apps.list_namespaced_replica_set("default").items == []


def test_statefulset_creates_pods_in_order_and_removes_the_highest_first(kube: Kube) -> None:
    body = deployment("whisper", ["sleep", "60"], replicas=3)
    body["kind"] = "StatefulSet"
    body["spec"]["serviceName"] = "whisper"
    kube.apps.create_namespaced_stateful_set("default", body)
    pods = kube.running("app=whisper", 3)
    by_name = {p.metadata.name: p for p in pods}
    assert sorted(by_name) == ["whisper-0", "whisper-1", "whisper-2"]
    started = [by_name[f"whisper-{i}"].status.start_time for i in range(3)]
    assert started == sorted(started)
    scale = kube.apps.read_namespaced_stateful_set_scale("whisper", "default")
    assert scale.spec.replicas == 3
    kube.apps.patch_namespaced_stateful_set_scale("whisper", "default", {"spec": {"replicas": 1}})
    wait_for(
        lambda: [p.metadata.name for p in kube.pods("app=whisper")] == ["whisper-0"],
        what="only whisper-0 left",
    )
    sts = wait_for(
        lambda: [
            s
            for s in [kube.apps.read_namespaced_stateful_set("whisper", "default")]
            if s.status.replicas == 1
        ],
        what="status follows",
    )[0]
    assert sts.status.ready_replicas == 1


def test_only_this_nodes_pod_goes_when_its_deletion_cost_is_lowest(kube: Kube) -> None:
    # What a broker on one node does to a Deployment spread over two nodes.
    body = deployment("tts", ["sleep", "60"], replicas=2)
    kube.apps.create_namespaced_deployment("default", body)
    pods = kube.running("app=tts", 2)
    by_node = {p.spec.node_name: p.metadata.name for p in pods}
    assert set(by_node) == {"k3s-cp-01", "k3s-gpu-02"}  # spread by the scheduler
    kube.core.patch_namespaced_pod(
        by_node["k3s-gpu-02"],
        "default",
        {"metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": "-1000"}}},
    )
    kube.apps.patch_namespaced_deployment_scale("tts", "default", {"spec": {"replicas": 1}})
    left = wait_for(
        lambda: [p for p in [kube.pods("app=tts")] if len(p) == 1], what="one pod left"
    )[0]
    assert left[0].spec.node_name == "k3s-cp-01"
