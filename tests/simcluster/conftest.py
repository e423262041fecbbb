"""A simulated cluster per test on 127.0.0.1, and official-client APIs bound to it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

pytest.importorskip("kubernetes")

from kubernetes import client, config

from gpuherd.simcluster import NodeSpec, SimCluster

T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout: float = 20.0, what: str = "") -> T:
    """Poll `check` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")


@dataclass
class Kube:
    cluster: SimCluster
    core: Any
    apps: Any
    batch: Any
    coordination: Any
    api_client: Any

    def pods(self, selector: str = "", namespace: str = "default") -> list[Any]:
        return list(self.core.list_namespaced_pod(namespace, label_selector=selector).items)

    def running(self, selector: str, count: int) -> list[Any]:
        def check() -> list[Any] | None:
            pods = [p for p in self.pods(selector) if p.status.phase == "Running"]
            return pods if len(pods) == count and len(self.pods(selector)) == count else None

        return wait_for(check, what=f"{count} running pods {selector}")


def _pids_alive(cluster: SimCluster) -> list[int]:
    alive = []
    for kubelet in cluster.kubelets.values():
        for run in kubelet.runs.values():
            for container in run.containers.values():
                if container.proc is not None and container.proc.poll() is None:
                    alive.append(container.proc.pid)
    return alive


def start_cluster(
    tmp_path: Path, sim_dir: Path | None, nodes: list[NodeSpec], **kwargs: Any
) -> Iterator[Kube]:
    cluster = SimCluster(
        directory=tmp_path / "cluster",
        nodes=nodes,
        sim_dir=sim_dir,
        bookmark_interval=0.3,
        tick=0.05,
        **kwargs,
    )
    cluster.start()
    pids: list[int] = []
    try:
        api_client = config.new_client_from_config(str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
        yield Kube(
            cluster,
            client.CoreV1Api(api_client),
            client.AppsV1Api(api_client),
            client.BatchV1Api(api_client),
            client.CoordinationV1Api(api_client),
            api_client,
        )
        pids = _pids_alive(cluster)
    finally:
        cluster.stop()
    for pid in pids:  # every pod process the cluster ran is gone after stop()
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.fixture
def kube(tmp_path: Path, sim_dir: Path) -> Iterator[Kube]:
    """Two nodes as on a small k3s cluster: k3s-cp-01 owns GPU 0, k3s-gpu-02 owns GPU 1."""
    yield from start_cluster(
        tmp_path, sim_dir, [NodeSpec("k3s-cp-01", (0,)), NodeSpec("k3s-gpu-02", (1,))]
    )


def deployment(
    name: str, command: list[str], *, replicas: int = 1, gpus: int = 0, grace: int = 5
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": name, "image": f"example/{name}:1", "command": command}
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [container], "terminationGracePeriodSeconds": grace},
            },
        },
    }
