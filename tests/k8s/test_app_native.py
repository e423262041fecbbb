"""An app-native method in Kubernetes mode: an Ollama Deployment annotated
`gpuherd.io/preempt: ollama` is released through Ollama's own API at its pod's IP on this node
(its model unloaded, the pod left running, no scale) and its model comes back after the Job."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpuherd.gpu.sim import SimHost
from tests.k8s.broker import CP, broker, cli, held_by, one_node, queued_job, running, tenant
from tests.simcluster.conftest import Kube, wait_for

GIB = 1024**3


@pytest.fixture
def kube(tmp_path: Path, sim_dir: Path) -> Iterator[Kube]:
    yield from one_node(tmp_path, sim_dir)


def _ollama() -> dict[str, Any]:
    serve = [sys.executable, "-m", "gpuherd", "sim", "app", "ollama", "llama3=5GiB"]
    command = [*serve, "--host", "$(POD_IP)", "--port", "11434"]
    return running(tenant("ollama", "5GiB", 10, CP, **{"gpuherd.io/preempt": "ollama"}), command)


def test_ollama_is_unloaded_at_its_pod_ip_and_reloaded_without_a_scale(
    kube: Kube, sim_dir: Path, tmp_path: Path
) -> None:
    kube.apps.create_namespaced_deployment("default", _ollama())
    kube.running("app=ollama", 1)
    wait_for(lambda: held_by(sim_dir, "ollama") == 5 * GIB, what="llama3 loaded")
    (pod,) = kube.pods("app=ollama")
    state = tmp_path / "state"
    with broker(kube.cluster, sim_dir, CP, 0, state):
        kube.batch.create_namespaced_job("default", queued_job("render", "9GiB", 50, "2s"))
        wait_for(lambda: held_by(sim_dir, "ollama") == 0, timeout=30, what="llama3 unloaded")
        assert [p.metadata.uid for p in kube.pods("app=ollama")] == [pod.metadata.uid]  # kept
        wait_for(
            lambda: kube.batch.read_namespaced_job("render", "default").status.succeeded,
            timeout=60,
            what="render done",
        )
        wait_for(lambda: held_by(sim_dir, "ollama") == 5 * GIB, timeout=30, what="llama3 back")
        deployment = kube.apps.read_namespaced_deployment("ollama", "default")
        assert deployment.spec.replicas == 1  # never scaled
        assert "gpuherd.io/restore-replicas" not in (deployment.metadata.annotations or {})
        wait_for(
            lambda: [j["state"] for j in cli(state, "jobs", "--all")] == ["succeeded"],
            timeout=30,
            what="the job's record",
        )
    assert [p.metadata.uid for p in kube.pods("app=ollama")] == [pod.metadata.uid]


def _trainer() -> dict[str, Any]:
    hold = [sys.executable, "-m", "gpuherd", "sim", "hold", "--gpu", "$(CUDA_VISIBLE_DEVICES)"]
    command = [*hold, "--vram", "4GiB", "--name", "trainer"]
    notes = {"gpuherd.io/preempt": "checkpoint"}
    return running(tenant("trainer", "4GiB", 10, CP, **notes), command)


def _trainer_proc(sim_dir: Path) -> tuple[int, int] | None:
    with SimHost(sim_dir) as host:
        found = [
            (p.pid, p.used_bytes or 0) for p in host.snapshot().processes if p.name == "trainer"
        ]
    return found[0] if found else None


def test_checkpoint_parks_the_pods_process_in_host_ram_through_host_pid_and_brings_it_back(
    kube: Kube, sim_dir: Path, tmp_path: Path
) -> None:
    kube.apps.create_namespaced_deployment("default", _trainer())
    kube.running("app=trainer", 1)
    wait_for(lambda: (_trainer_proc(sim_dir) or (0, 0))[1] == 4 * GIB, what="4 GiB held")
    (pod,) = kube.pods("app=trainer")
    pid, _ = _trainer_proc(sim_dir) or (0, 0)
    state = tmp_path / "state"
    with broker(kube.cluster, sim_dir, CP, 0, state):
        kube.batch.create_namespaced_job("default", queued_job("render", "10GiB", 50, "2s"))
        # The same process, its memory parked: the pod runs on, nothing scaled.
        wait_for(
            lambda: [e for e in cli(state, "events") if e["kind"] == "released"],
            timeout=30,
            what="released",
        )
        assert (_trainer_proc(sim_dir) or (pid, 0))[1] == 0  # its memory parked in host RAM
        os.kill(pid, 0)  # the same process lives on
        assert [p.metadata.uid for p in kube.pods("app=trainer")] == [pod.metadata.uid]
        wait_for(
            lambda: kube.batch.read_namespaced_job("render", "default").status.succeeded,
            timeout=60,
            what="render done",
        )
        wait_for(lambda: _trainer_proc(sim_dir) == (pid, 4 * GIB), timeout=30, what="back")
        deployment = kube.apps.read_namespaced_deployment("trainer", "default")
        assert deployment.spec.replicas == 1
        assert "gpuherd.io/restore-replicas" not in (deployment.metadata.annotations or {})
        [release] = [e for e in cli(state, "events") if e["kind"] == "release_intent"]
        assert "checkpoint" in release["message"]
    assert [p.metadata.uid for p in kube.pods("app=trainer")] == [pod.metadata.uid]
