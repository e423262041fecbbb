"""Jobs that may land on any GPU node spread over the idle brokers: a broker with a job in
flight asks for no other, one that sees another broker's lease on a Job (through its lease
watch) does not ask for it, and each Job is admitted once."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpuherd.broker.kubemode import _score
from gpuherd.simcluster import NodeSpec
from tests.k8s.broker import broker, queued_job
from tests.simcluster.conftest import Kube, start_cluster, wait_for

NODES = ("k3s-gpu-01", "k3s-gpu-02")
RANK = """\
import sys
from gpuherd.broker.kubemode import _score
uid, nodes = sys.argv[1], sys.argv[2:]
print(*sorted(nodes, key=lambda n: _score(uid, n)))
"""


@pytest.fixture
def kube(tmp_path: Path, sim_dir: Path) -> Iterator[Kube]:
    yield from start_cluster(
        tmp_path, sim_dir, [NodeSpec(NODES[0], (0,), replicas=4), NodeSpec(NODES[1], (1,))]
    )


def _node_of(kube: Kube, name: str) -> Any:
    job = kube.batch.read_namespaced_job(name, "default")
    return (job.spec.template.spec.node_selector or {}).get("kubernetes.io/hostname")


def test_two_jobs_for_any_node_go_one_to_each_idle_broker(
    kube: Kube, sim_dir: Path, tmp_path: Path
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    with (
        broker(kube.cluster, sim_dir, NODES[0], 0, one),
        broker(kube.cluster, sim_dir, NODES[1], 1, two),
    ):
        for name in ("render-a", "render-b"):  # each runs 4 s: the first broker stays busy
            kube.batch.create_namespaced_job("default", queued_job(name, "2GiB", 5, "4s"))
        for name in ("render-a", "render-b"):
            wait_for(lambda: _node_of(kube, name) is not None, timeout=30, what=name)  # noqa: B023
        placed = {name: _node_of(kube, name) for name in ("render-a", "render-b")}
        assert sorted(placed.values()) == sorted(NODES), placed  # not both on one node
        for name in placed:
            wait_for(
                lambda: kube.batch.read_namespaced_job(name, "default").status.succeeded,  # noqa: B023
                timeout=60,
                what=f"{name} done",
            )


def test_every_broker_ranks_the_nodes_alike_and_differently_per_job() -> None:
    nodes = (*NODES, "k3s-gpu-03")
    order = sorted(nodes, key=lambda n: _score("0d5e-uid", n))
    # Each broker is a process of its own: the ranking must not depend on per-process state
    # such as Python's string hash seed.
    elsewhere = subprocess.run(
        [sys.executable, "-c", RANK, "0d5e-uid", *nodes],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    ).stdout.split()
    assert order == elsewhere  # the same in every broker
    orders = {tuple(sorted(nodes, key=lambda n: _score(f"job-{i}", n))) for i in range(40)}
    assert len(orders) > 3  # and different Jobs go first to different nodes
