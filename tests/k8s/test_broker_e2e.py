"""End to end, with the official client: `gpuherd serve --kubernetes` on a simulated k3s
cluster whose pods hold simulated VRAM."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpuherd.simcluster import NodeSpec
from tests.k8s.broker import broker, cli, queued_job, tenant, used
from tests.k8s.conftest import cluster
from tests.simcluster.conftest import Kube, start_cluster, wait_for

GIB = 1024**3
CP, GPU2 = "k3s-cp-01", "k3s-gpu-02"


@pytest.fixture
def kube(tmp_path: Path, sim_dir: Path) -> Iterator[Kube]:
    """Two time-sliced GPU nodes: k3s-cp-01 owns GPU 0 (12 GiB), k3s-gpu-02 GPU 1 (20 GiB)."""
    yield from start_cluster(
        tmp_path, sim_dir, [NodeSpec(CP, (0,), replicas=4), NodeSpec(GPU2, (1,), replicas=4)]
    )


def _deploy(kube: Kube, name: str) -> Any:
    return kube.apps.read_namespaced_deployment(name, "default")


def _gpu_leases(kube: Kube, node: str = CP) -> list[Any]:
    """The node's GPU leases (one per GPU while tenants on it are released)."""
    found = kube.coordination.list_lease_for_all_namespaces(
        label_selector=f"gpuherd.io/node={node}"
    )
    return list(found.items)


def _two_tenants(kube: Kube, sim_dir: Path, **tts_notes: str) -> None:
    kube.apps.create_namespaced_deployment("default", tenant("ollama", "5GiB", 10, CP))
    kube.apps.create_namespaced_deployment("default", tenant("tts", "4GiB", 1, CP, **tts_notes))
    kube.running("app=ollama", 1)
    kube.running("app=tts", 1)
    wait_for(lambda: used(sim_dir, 0) == 9 * GIB, what="9 GiB held by the tenants")


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
        [lease] = _gpu_leases(kube)  # taken before the release, held while tts is down
        assert lease.spec.holder_identity == CP
        assert lease.metadata.labels["gpuherd.io/gpu"].lower() in lease.metadata.name
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
        wait_for(lambda: used(sim_dir, 0) == 9 * GIB, what="the tenants' memory back")
        wait_for(lambda: not _gpu_leases(kube), what="the GPU lease let go after the restore")


def _events(state: Path) -> list[dict[str, Any]]:
    return list(cli(state, "events"))


def _job(kube: Kube, name: str) -> Any:
    return kube.batch.read_namespaced_job(name, "default")


def test_an_hpa_owned_tenant_is_refused_with_the_reason_and_nothing_moves(
    kube: Kube, sim_dir: Path, tmp_path: Path
) -> None:
    _two_tenants(kube, sim_dir)
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "tts"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "tts"},
            "minReplicas": 1,
            "maxReplicas": 2,
        },
    }
    autoscaling: Any = __import__("kubernetes").client.AutoscalingV2Api(kube.api_client)
    autoscaling.create_namespaced_horizontal_pod_autoscaler("default", hpa)
    state = tmp_path / "state"
    with broker(kube.cluster, sim_dir, CP, 0, state):
        kube.batch.create_namespaced_job("default", queued_job("render", "6GiB", 50))
        failed = wait_for(
            lambda: [e for e in _events(state) if "HorizontalPodAutoscaler tts" in e["message"]],
            timeout=30, what="the refusal in the events",
        )  # fmt: skip
        assert "owns its replicas" in failed[0]["message"]
        assert _deploy(kube, "tts").spec.replicas == 1
        assert not any(
            k.startswith("gpuherd.io/re") for k in _deploy(kube, "tts").metadata.annotations
        )
        assert used(sim_dir, 0) == 9 * GIB


def test_a_job_whose_volume_is_on_another_node_fails_before_any_release(
    kube: Kube, sim_dir: Path, tmp_path: Path
) -> None:
    _two_tenants(kube, sim_dir)
    kube.core.create_persistent_volume(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": "pv-renders"},
            "spec": {
                "capacity": {"storage": "10Gi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "local-path",
                "hostPath": {"path": "/var/lib/renders"},
                "claimRef": {"namespace": "default", "name": "renders"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [GPU2]}
                ]}]}},
            },
        }
    )  # fmt: skip
    kube.core.create_namespaced_persistent_volume_claim(
        "default",
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "renders"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "local-path",
                "volumeName": "pv-renders",
                "resources": {"requests": {"storage": "10Gi"}},
            },
        },
    )
    body = queued_job("render", "6GiB", 50)
    pod = body["spec"]["template"]["spec"]
    pod["volumes"] = [{"name": "out", "persistentVolumeClaim": {"claimName": "renders"}}]
    pod["containers"][0]["volumeMounts"] = [{"name": "out", "mountPath": "/out"}]
    state = tmp_path / "state"
    with broker(kube.cluster, sim_dir, CP, 0, state):
        kube.batch.create_namespaced_job("default", body)
        [job] = wait_for(
            lambda: [j for j in cli(state, "jobs", "--all") if j["state"] == "failed"],
            timeout=30, what="the job failed by preflight",
        )  # fmt: skip
        assert f"claim renders is bound to a volume on {GPU2}" in job["reason"]
        assert _job(kube, "render").spec.suspend is True  # never started
        assert _deploy(kube, "tts").spec.replicas == 1
        assert _deploy(kube, "ollama").spec.replicas == 1


def test_two_brokers_on_two_nodes_never_both_admit_one_job(
    kube: Kube, sim_dir: Path, tmp_path: Path
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    with broker(kube.cluster, sim_dir, CP, 0, one), broker(kube.cluster, sim_dir, GPU2, 1, two):
        for i in range(4):
            kube.batch.create_namespaced_job("default", queued_job(f"render-{i}", "2GiB", 5))
        for i in range(4):
            name = f"render-{i}"
            wait_for(lambda: _job(kube, name).status.succeeded, timeout=40, what=name)  # noqa: B023

        def recorded() -> dict[str, list[str]]:
            return {
                b: [j["name"] for j in cli(s, "jobs", "--all") if j["state"] == "succeeded"]
                for b, s in (("one", one), ("two", two))
            }

        # The cluster says succeeded a moment before the broker has followed the pod's end,
        # restored and recorded it: wait for the brokers' records, not only the Jobs'.
        wait_for(lambda: sum(map(len, recorded().values())) >= 4, timeout=60, what="records")
        admitted = recorded()
    names = admitted["one"] + admitted["two"]
    assert sorted(names) == [f"render-{i}" for i in range(4)]  # each exactly once
    for i in range(4):
        job = _job(kube, f"render-{i}")
        pinned = job.spec.template.spec.node_selector["kubernetes.io/hostname"]
        assert (pinned == CP) == (f"render-{i}" in admitted["one"])
        assert job.status.succeeded == 1
        assert len(kube.pods(f"job-name=render-{i}")) == 1


def test_an_expired_watch_history_mid_run_is_recovered(sim_dir: Path, tmp_path: Path) -> None:
    nodes = [NodeSpec(CP, (0,), replicas=4), NodeSpec(GPU2, (1,), replicas=4)]
    # Bookmarks rarer than the broker's watches last: its versions go stale, as behind a
    # busy API server, and the expiry below makes the next watch request meet 410.
    stderr: list[str] = []
    with cluster(tmp_path, sim_dir, nodes, bookmark_interval=60) as kube:
        _two_tenants(kube, sim_dir)
        state = tmp_path / "state"
        fast = {"GPUHERD_WATCH_SECONDS": "1"}
        with broker(kube.cluster, sim_dir, CP, 0, state, env=fast, stderr=stderr):
            kube.batch.create_namespaced_job("default", queued_job("first", "2GiB", 50))
            wait_for(lambda: _job(kube, "first").status.succeeded, timeout=30, what="first")
            elsewhere = tenant("other", "1GiB", 0, GPU2)
            kube.apps.create_namespaced_deployment("default", elsewhere)
            kube.running("app=other", 1)  # versions move on; none of them this node's
            kube.cluster.expire_history()
            time.sleep(2.5)  # both watches reopen (each lasts 1 s) from versions now expired
            kube.batch.create_namespaced_job("default", queued_job("second", "6GiB", 50))
            wait_for(lambda: _job(kube, "second").status.succeeded, timeout=40, what="second")
            wait_for(lambda: _deploy(kube, "tts").status.ready_replicas == 1, timeout=30,
                     what="tts back after the second job")  # fmt: skip
        assert "(410 Gone): listing again" in stderr[0], stderr


def _released(kube: Kube) -> bool:
    return bool(_deploy(kube, "tts").spec.replicas == 0)


def _restored(kube: Kube) -> bool:
    d = _deploy(kube, "tts")
    notes = d.metadata.annotations or {}
    return d.status.ready_replicas == 1 and not any(k.startswith("gpuherd.io/re") for k in notes)


def test_a_broker_killed_mid_job_follows_it_again_and_restores(
    kube: Kube, sim_dir: Path, tmp_path: Path
) -> None:
    _two_tenants(kube, sim_dir)
    state = tmp_path / "state"
    with broker(kube.cluster, sim_dir, CP, 0, state) as first:
        kube.batch.create_namespaced_job("default", queued_job("render", "6GiB", 50, "4s"))
        wait_for(lambda: _released(kube), timeout=30, what="tts released")
        first.kill()  # kill -9: no clean stop
        first.wait(timeout=10)
    [left] = _gpu_leases(kube)  # the dead broker's: no other broker may act on tts meanwhile
    assert left.spec.holder_identity == CP
    with broker(kube.cluster, sim_dir, CP, 0, state):
        # The job had its memory first; the healed pod crash-loops out of memory until it ends.
        wait_for(lambda: _job(kube, "render").status.succeeded, timeout=40, what="render done")
        [job] = wait_for(
            lambda: [j for j in cli(state, "jobs", "--all") if j["state"] == "succeeded"],
            what="the job recorded",
        )
        assert job["name"] == "render"
        wait_for(lambda: _restored(kube), timeout=40, what="tts restored")
        wait_for(lambda: not _gpu_leases(kube), what="the lease taken over, then let go")
    assert len(kube.pods("job-name=render")) == 1  # admitted once


def test_with_the_journal_wiped_the_annotations_alone_restore_the_tenant(
    kube: Kube, sim_dir: Path, tmp_path: Path
) -> None:
    _two_tenants(kube, sim_dir)
    state = tmp_path / "state"
    with broker(kube.cluster, sim_dir, CP, 0, state) as first:
        kube.batch.create_namespaced_job("default", queued_job("render", "6GiB", 50, "2s"))
        wait_for(lambda: _job(kube, "render").status.active, timeout=30, what="render running")
        first.kill()
        first.wait(timeout=10)
    wait_for(lambda: _job(kube, "render").status.succeeded, timeout=30, what="render done")
    assert _released(kube)  # nobody gave it back while the broker was down
    shutil.rmtree(state)  # the hostPath wiped
    with broker(kube.cluster, sim_dir, CP, 0, state):
        wait_for(lambda: _restored(kube), timeout=40, what="tts restored from its annotations")
        events = [e["event"] if "event" in e else e["kind"] for e in _events(state)]
        assert "restore_orphan" in events
        wait_for(lambda: not _gpu_leases(kube), what="the dead broker's GPU lease let go")
    wait_for(lambda: used(sim_dir, 0) == 9 * GIB, what="the tenants' memory back")


def test_argo_cd_tracking_is_warned_and_its_self_heal_detected(
    kube: Kube, sim_dir: Path, tmp_path: Path
) -> None:
    _two_tenants(kube, sim_dir)
    argo = {"metadata": {"labels": {"argocd.argoproj.io/instance": "media"}}}
    kube.apps.patch_namespaced_deployment("tts", "default", argo)
    state = tmp_path / "state"
    with broker(kube.cluster, sim_dir, CP, 0, state):
        wait_for(lambda: [e for e in _events(state) if e["kind"] == "argocd_tracked"],
                 what="the warning")  # fmt: skip
        kube.batch.create_namespaced_job("default", queued_job("render", "6GiB", 50, "4s"))
        wait_for(lambda: _released(kube), timeout=30, what="tts released")
        wait_for(lambda: used(sim_dir, 0) == 11 * GIB, timeout=30, what="the job's 6 GiB held")
        # What Argo CD's self-heal does to a released workload (its pod finds no room).
        kube.apps.patch_namespaced_deployment_scale("tts", "default", {"spec": {"replicas": 1}})
        [healed] = wait_for(
            lambda: [e for e in _events(state) if e["kind"] == "argocd_scaled_back"],
            timeout=20, what="the self-heal noticed",
        )  # fmt: skip
        assert "has 1 replicas again" in healed["message"]
        # The job had its memory first; the healed pod crash-loops out of memory until it ends.
        wait_for(lambda: _job(kube, "render").status.succeeded, timeout=40, what="render done")
