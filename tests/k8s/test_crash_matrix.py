"""The kill -9 matrix in the Kubernetes mode: the broker dies at each crash point of a job that
needs both tenants' memory; the next broker on the node finishes the job exactly once and
restores both tenants."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.k8s.broker import broker, cli, one_node, queued_job, tenant, used
from tests.simcluster.conftest import Kube, wait_for

GIB = 1024**3
CP = "k3s-cp-01"
# restore_started is not here: the kubernetes method starts no process of its own to journal.
POINTS = ["after_intent", "after_release", "job_running", "after_exit", "mid_restore"]


@pytest.fixture
def kube(tmp_path: Path, sim_dir: Path) -> Iterator[Kube]:
    yield from one_node(tmp_path, sim_dir)


def _back(kube: Kube, name: str) -> bool:
    d: Any = kube.apps.read_namespaced_deployment(name, "default")
    notes = d.metadata.annotations or {}
    return bool(
        d.spec.replicas == 1
        and d.status.ready_replicas == 1
        and not any(k.startswith("gpuherd.io/re") for k in notes)
    )


@pytest.mark.parametrize("point", POINTS)
def test_a_broker_killed_at_each_point_finishes_the_job_once_and_restores(
    point: str, kube: Kube, sim_dir: Path, tmp_path: Path
) -> None:
    # A restore on restart starts the tenant's cooldown; the requeued job must not wait a minute.
    short = {"gpuherd.io/cooldown": "1s"}
    kube.apps.create_namespaced_deployment("default", tenant("ollama", "5GiB", 10, CP, **short))
    kube.apps.create_namespaced_deployment("default", tenant("tts", "4GiB", 1, CP, **short))
    kube.running("app=ollama", 1)
    kube.running("app=tts", 1)
    wait_for(lambda: used(sim_dir) == 9 * GIB, what="the tenants holding 9 GiB")
    state = tmp_path / "state"
    with broker(kube.cluster, sim_dir, CP, 0, state, env={"GPUHERD_CRASH_AT": point}) as doomed:
        kube.batch.create_namespaced_job("default", queued_job("render", "10GiB", 50, "2s"))
        assert doomed.wait(timeout=60) == -9, f"the broker did not reach {point}"
    with broker(kube.cluster, sim_dir, CP, 0, state):
        try:
            wait_for(
                lambda: kube.batch.read_namespaced_job("render", "default").status.succeeded,
                timeout=60, what="the job done",
            )  # fmt: skip
        except AssertionError:
            events = [
                f"{e['kind']} {e['tenant'] or e['job']}: {e['message']}"
                for e in cli(state, "events")
            ]
            raise AssertionError("\n".join(events)) from None
        for name in ("ollama", "tts"):
            wait_for(lambda name=name: _back(kube, name), timeout=60, what=f"{name} back")  # type: ignore[misc]
        jobs = wait_for(
            lambda: [j for j in cli(state, "jobs", "--all") if j["state"] == "succeeded"],
            timeout=30, what="the job recorded as succeeded",
        )  # fmt: skip
        assert [j["name"] for j in jobs] == ["render"]
    assert len(kube.pods("job-name=render")) == 1  # it ran once
    wait_for(lambda: used(sim_dir) == 9 * GIB, timeout=30, what="the tenants' memory back")
