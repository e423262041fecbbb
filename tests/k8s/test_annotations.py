"""Workload and Job annotations read as gpuherd declarations; leases raced by two brokers."""

from __future__ import annotations

import time
from typing import Any

from gpuherd.ids import GpuName
from gpuherd.k8s import annotations as notes
from gpuherd.k8s import leases
from gpuherd.k8s.client import KubeClient
from gpuherd.spec.model import KubernetesMethod, OllamaMethod, VllmSleepMethod

GIB = 1024**3


def _workload(**annotations: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "ollama", "namespace": "ai", "annotations": annotations},
        "spec": {"selector": {"matchLabels": {"app": "ollama"}}},
    }


def test_a_workloads_annotations_make_a_tenant() -> None:
    w = _workload(
        **{
            "gpuherd.io/vram": "6Gi",
            "gpuherd.io/priority": "10",
            "gpuherd.io/max-downtime": "2h",
            "gpuherd.io/cooldown": "5m",
            "gpuherd.io/tenant": "llm",
        }
    )
    skipped: list[str] = []
    spec = notes.tenant_spec(w, "StatefulSet", GpuName("gpu0"), skipped)
    assert spec is not None
    assert not skipped
    assert notes.tenant_name(w) == "llm"
    assert spec.vram.typical.bytes == 6 * GIB
    assert spec.priority == 10
    assert spec.max_downtime == 7200
    assert spec.cooldown == 300
    assert spec.match is not None
    assert spec.match.pod is not None
    assert spec.match.pod.namespace == "ai"
    assert spec.match.pod.labels == {"app": "ollama"}
    [method] = spec.preempt
    assert isinstance(method, KubernetesMethod)
    assert (method.kind_, method.namespace, method.name) == ("StatefulSet", "ai", "ollama")


def test_a_bad_annotation_is_reported_by_name_and_skipped() -> None:
    skipped: list[str] = []
    w = _workload(**{"gpuherd.io/vram": "lots", "gpuherd.io/preempt": "mystery,kubernetes"})
    assert notes.tenant_spec(w, "Deployment", None, skipped) is None
    assert any("deployment/ai/ollama: preempt mystery" in s for s in skipped)
    assert any("deployment/ai/ollama: annotation vram" in s for s in skipped)


def test_app_native_methods_reach_the_pod_at_its_ip_or_the_url_given() -> None:
    skipped: list[str] = []
    w = _workload(**{"gpuherd.io/vram": "6Gi", "gpuherd.io/preempt": "ollama,kubernetes"})
    spec = notes.tenant_spec(w, "Deployment", None, skipped)
    assert spec is not None
    assert not skipped
    ollama, scale = spec.preempt
    assert isinstance(ollama, OllamaMethod)
    assert ollama.url == "http://{pod_ip}:11434"
    assert isinstance(scale, KubernetesMethod)
    given = _workload(
        **{"gpuherd.io/preempt": "vllm-sleep", "gpuherd.io/url": "http://{pod_ip}:9000"}
    )
    spec = notes.tenant_spec(given, "Deployment", None, skipped)
    assert spec is not None
    [vllm] = spec.preempt
    assert isinstance(vllm, VllmSleepMethod)
    assert vllm.url == "http://{pod_ip}:9000"


def test_which_jobs_wait_for_admission_and_where_they_may_land() -> None:
    job: dict[str, Any] = {
        "metadata": {"annotations": {"gpuherd.io/vram": "8Gi", "gpuherd.io/priority": "50"}},
        "spec": {
            "suspend": True,
            "activeDeadlineSeconds": 3600,
            "template": {"spec": {"nodeSelector": {"nvidia.com/gpu.present": "true"}}},
        },
        "status": {},
    }
    assert notes.waiting_for_admission(job)
    assert notes.job_request(job) == ("8Gi", 50, 3600.0)
    gpu_node = {"nvidia.com/gpu.present": "true", "kubernetes.io/hostname": "a"}
    assert notes.lands_on(job, "a", gpu_node)
    assert not notes.lands_on(job, "b", {"kubernetes.io/hostname": "b"})
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": ["b"]}]}]}}}  # fmt: skip
    job["spec"]["template"]["spec"]["affinity"] = affinity
    assert not notes.lands_on(job, "a", gpu_node)
    job["status"]["startTime"] = "2026-12-01T00:00:00Z"
    assert not notes.waiting_for_admission(job)  # started once: never admitted again


def test_of_two_brokers_one_holds_a_lease_until_it_expires(kc: KubeClient) -> None:
    name = leases.lease_name("job", "4f1c")
    assert leases.acquire(kc, "default", name, "k3s-cp-01", seconds=1)
    assert not leases.acquire(kc, "default", name, "k3s-gpu-02", seconds=1)
    assert leases.acquire(kc, "default", name, "k3s-cp-01", seconds=1)  # renewed by its holder
    assert leases.holds(kc, "default", name, "k3s-cp-01")
    time.sleep(1.2)
    assert leases.acquire(kc, "default", name, "k3s-gpu-02", seconds=30)  # expired: taken over
    assert not leases.holds(kc, "default", name, "k3s-cp-01")
    assert not leases.acquire(kc, "default", name, "k3s-cp-01")
    leases.release(kc, "default", name)
    assert leases.acquire(kc, "default", name, "k3s-cp-01")
