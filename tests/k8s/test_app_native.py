"""An app-native method in Kubernetes mode: an Ollama Deployment annotated
`gpuherd.io/preempt: ollama` is released through Ollama's own API at its pod's IP on this node
(its model unloaded, the pod left running, no scale) and its model comes back after the Job."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpuherd.gpu.sim import SimHost
from tests.k8s.broker import CP, broker, cli, one_node, queued_job, running, tenant
from tests.simcluster.conftest import Kube, wait_for

GIB = 1024**3


@pytest.fixture
def kube(tmp_path: Path, sim_dir: Path) -> Iterator[Kube]:
    yield from one_node(tmp_path, sim_dir)


def _ollama() -> dict[str, Any]:
    serve = [sys.executable, "-m", "gpuherd", "sim", "app", "ollama", "llama3=5GiB"]
    command = [*serve, "--host", "$(POD_IP)", "--port", "11434"]
    return running(tenant("ollama", "5GiB", 10, CP, **{"gpuherd.io/preempt": "ollama"}), command)


def _held(sim_dir: Path) -> int:
    with SimHost(sim_dir) as host:
        return sum(p.used_bytes or 0 for p in host.snapshot().processes if p.name == "ollama")


def test_ollama_is_unloaded_at_its_pod_ip_and_reloaded_without_a_scale(
    kube: Kube, sim_dir: Path, tmp_path: Path
) -> None:
    kube.apps.create_namespaced_deployment("default", _ollama())
    kube.running("app=ollama", 1)
    wait_for(lambda: _held(sim_dir) == 5 * GIB, what="llama3 loaded")
    (pod,) = kube.pods("app=ollama")
    state = tmp_path / "state"
    with broker(kube.cluster, sim_dir, CP, 0, state):
        kube.batch.create_namespaced_job("default", queued_job("render", "9GiB", 50, "2s"))
        wait_for(lambda: _held(sim_dir) == 0, timeout=30, what="llama3 unloaded")
        assert [p.metadata.uid for p in kube.pods("app=ollama")] == [pod.metadata.uid]  # kept
        wait_for(
            lambda: kube.batch.read_namespaced_job("render", "default").status.succeeded,
            timeout=60,
            what="render done",
        )
        wait_for(lambda: _held(sim_dir) == 5 * GIB, timeout=30, what="llama3 back")
        deployment = kube.apps.read_namespaced_deployment("ollama", "default")
        assert deployment.spec.replicas == 1  # never scaled
        assert "gpuherd.io/restore-replicas" not in (deployment.metadata.annotations or {})
        wait_for(
            lambda: [j["state"] for j in cli(state, "jobs", "--all")] == ["succeeded"],
            timeout=30,
            what="the job's record",
        )
    assert [p.metadata.uid for p in kube.pods("app=ollama")] == [pod.metadata.uid]
