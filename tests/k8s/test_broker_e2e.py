"""End to end, with the official client: `gpuherd serve --kubernetes` on a simulated k3s
cluster whose pods hold simulated VRAM."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpuherd.gpu.sim import SimHost
from gpuherd.simcluster import NodeSpec
from tests.k8s.broker import broker, cli, queued_job, tenant
from tests.simcluster.conftest import Kube, start_cluster, wait_for

GIB = 1024**3
CP, GPU2 = "k3s-cp-01", "k3s-gpu-02"


@pytest.fixture
def kube(tmp_path: Path, sim_dir: Path) -> Iterator[Kube]:
    """Two time-sliced GPU nodes: k3s-cp-01 owns GPU 0 (12 GiB), k3s-gpu-02 GPU 1 (20 GiB)."""
    yield from start_cluster(
        tmp_path, sim_dir, [NodeSpec(CP, (0,), replicas=4), NodeSpec(GPU2, (1,), replicas=4)]
    )


def _used(sim_dir: Path, gpu: int) -> int:
    with SimHost(sim_dir) as host:
        return next(d.memory_used for d in host.snapshot().devices if d.index == gpu)


def _deploy(kube: Kube, name: str) -> Any:
    return kube.apps.read_namespaced_deployment(name, "default")


def _two_tenants(kube: Kube, sim_dir: Path, **tts_notes: str) -> None:
    kube.apps.create_namespaced_deployment("default", tenant("ollama", "5GiB", 10, CP))
    kube.apps.create_namespaced_deployment("default", tenant("tts", "4GiB", 1, CP, **tts_notes))
    kube.running("app=ollama", 1)
    kube.running("app=tts", 1)
    wait_for(lambda: _used(sim_dir, 0) == 9 * GIB, what="9 GiB held by the tenants")


def test_a_queued_job_gets_the_lower_priority_tenants_memory_and_gives_it_back(
    kube: Kube, sim_dir: Path, tmp_path: Path
) -> None:
    _two_tenants(kube, sim_dir)
    state = tmp_path / "state"
    with broker(kube.cluster, sim_dir, CP, 0, state):
        kube.batch.create_namespaced_job("default", queued_job("render", "6GiB", 50))
        seen: dict[str, str] = {}

        def released() -> bool:
            notes = _deploy(kube, "tts").metadata.annotations or {}
            seen.update({k: v for k, v in notes.items() if k.startswith("gpuherd.io/re")})
            return bool(_deploy(kube, "tts").spec.replicas == 0)

        wait_for(released, timeout=30, what="tts scaled to 0")
        assert seen["gpuherd.io/restore-replicas"] == "1"
        assert seen["gpuherd.io/released-by"].startswith(f"{CP}/")
        job = wait_for(
            lambda: [j for j in [kube.batch.read_namespaced_job("render", "default")] if j.status.succeeded],
            timeout=30, what="the render Job completed",
        )[0]  # fmt: skip
        assert job.spec.template.spec.node_selector == {"kubernetes.io/hostname": CP}
        assert job.metadata.annotations["gpuherd.io/job-id"]
        back = wait_for(
            lambda: [d for d in [_deploy(kube, "tts")] if d.status.ready_replicas == 1],
            timeout=30, what="tts back",
        )[0]  # fmt: skip
        wait_for(lambda: not any(k.startswith("gpuherd.io/re") for k in
                                 (_deploy(kube, "tts").metadata.annotations or {})),
                 what="the release annotations removed")  # fmt: skip
        assert back.spec.replicas == 1
        assert _deploy(kube, "ollama").spec.replicas == 1  # the higher priority one never moved
        jobs = wait_for(
            lambda: [j for j in cli(state, "jobs", "--all") if j["state"] == "succeeded"],
            what="the job recorded as succeeded",
        )
        assert [j["name"] for j in jobs] == ["render"]
        wait_for(lambda: _used(sim_dir, 0) == 9 * GIB, what="the tenants' memory back")
