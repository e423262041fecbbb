"""The Kubernetes mode against the simulated cluster, through gpuherd's own client."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("kubernetes")

from gpuherd.k8s.client import KubeClient
from gpuherd.simcluster import NodeSpec, SimCluster
from tests.simcluster.conftest import Kube, start_cluster


@contextmanager
def cluster(tmp_path: Path, sim_dir: Path, nodes: list[NodeSpec], **kwargs: Any) -> Iterator[Kube]:
    """A simulated cluster with the cluster's own settings (`bookmark_interval`...)."""
    from kubernetes import client, config

    settings: dict[str, Any] = {"bookmark_interval": 0.3, "tick": 0.05, **kwargs}
    with SimCluster(directory=tmp_path / "cluster", nodes=nodes, sim_dir=sim_dir, **settings) as c:
        api: Any = config.new_client_from_config(str(c.kubeconfig))  # type: ignore[no-untyped-call]
        yield Kube(
            c,
            client.CoreV1Api(api),
            client.AppsV1Api(api),
            client.BatchV1Api(api),
            client.CoordinationV1Api(api),
            api,
        )
        api.close()


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
