"""The Kubernetes mode against the simulated cluster, through gpuherd's own client."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("kubernetes")

from gpuherd.k8s.client import KubeClient
from gpuherd.simcluster import NodeSpec
from tests.simcluster.conftest import Kube, start_cluster


@pytest.fixture
def kube(tmp_path: Path, sim_dir: Path) -> Iterator[Kube]:
    """Two k3s nodes: k3s-cp-01 owns GPU 0 (12 GiB), k3s-gpu-02 owns GPU 1 (20 GiB)."""
    yield from start_cluster(
        tmp_path, sim_dir, [NodeSpec("k3s-cp-01", (0,)), NodeSpec("k3s-gpu-02", (1,))]
    )


@pytest.fixture
def kc(kube: Kube) -> Iterator[KubeClient]:
    client = KubeClient.load(kube.cluster.kubeconfig)
    yield client
    client.close()


def hold(vram: str, name: str) -> list[str]:
    """A pod command holding `vram` on the GPU the device plugin gave it."""
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
