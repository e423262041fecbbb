"""A release whose pods outlast the release timeout: the workload was scaled to 0 but its pod,
deaf to TERM, still holds the memory when the keeper gives up. The keeper must undo the scale
(replicas back, annotations gone), not take the memory still held for a tenant that runs: its
pod would end a moment later and the tenant would stay released for good."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.k8s.broker import CP, broker, cli, held_by, one_node, queued_job, running, tenant
from tests.simcluster.conftest import Kube, wait_for

GIB = 1024**3
# Holds 4 GiB and ignores TERM: the kubelet KILLs it after the grace period.
DEAF = (
    "import os, signal, time\n"
    "from gpuherd.gpu.sim import SimHost\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "host = SimHost(os.environ['GPUHERD_SIM_DIR'])\n"
    "gpu = int(os.environ['CUDA_VISIBLE_DEVICES'].split(',')[0])\n"
    "host.allocate(pid=os.getpid(), gpu=gpu, nbytes=4 << 30, name='stubborn')\n"
    "time.sleep(3600)\n"
)


@pytest.fixture
def kube(tmp_path: Path, sim_dir: Path) -> Iterator[Kube]:
    yield from one_node(tmp_path, sim_dir)


def _stubborn() -> dict[str, Any]:
    notes = {"gpuherd.io/release-timeout": "2s"}
    command = [sys.executable, "-c", DEAF]
    return running(tenant("stubborn", "4GiB", 1, CP, **notes), command, grace=6)


def test_a_scale_whose_pod_outlives_the_release_timeout_is_undone(
    kube: Kube, sim_dir: Path, tmp_path: Path
) -> None:
    kube.apps.create_namespaced_deployment("default", _stubborn())
    kube.running("app=stubborn", 1)
    wait_for(lambda: held_by(sim_dir, "stubborn") == 4 * GIB, what="4 GiB held")
    state = tmp_path / "state"
    with broker(kube.cluster, sim_dir, CP, 0, state):
        kube.batch.create_namespaced_job("default", queued_job("render", "10GiB", 50))

        def scaled_to_zero() -> bool:
            d = kube.apps.read_namespaced_deployment("stubborn", "default")
            return bool(d.spec.replicas == 0)

        # First the release (else the check below holds before anything happened).
        wait_for(scaled_to_zero, timeout=30, what="the release's scale to 0")

        def undone() -> bool:
            d = kube.apps.read_namespaced_deployment("stubborn", "default")
            notes = d.metadata.annotations or {}
            return bool(
                d.spec.replicas == 1
                and "gpuherd.io/released-by" not in notes
                and (d.status.ready_replicas or 0) == 1
            )

        wait_for(undone, timeout=60, what="the scale undone and its pod Ready again")
        wait_for(
            lambda: held_by(sim_dir, "stubborn") == 4 * GIB, timeout=30, what="4 GiB held again"
        )
        # The job could not get its room this time: it failed, the tenant is back.
        wait_for(
            lambda: [j["state"] for j in cli(state, "jobs", "--all")] == ["failed"],
            timeout=30,
            what="the job's record",
        )
