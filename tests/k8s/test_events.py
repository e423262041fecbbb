"""Kubernetes Events from the broker, read back with the official client: on the tenant's
workload (released, restored, refused) and on the Job (admitted, refused by preflight,
finished); best effort, never in the way of an action; the simulated cluster checks
them as the real API server does."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes.client import ApiException

from gpuherd.k8s import events
from gpuherd.k8s.client import KubeClient
from tests.k8s.broker import broker, cli, one_node, queued_job, tenant, used
from tests.simcluster.conftest import Kube, wait_for

GIB = 1024**3
CP = "k3s-cp-01"


@pytest.fixture
def kube(tmp_path: Path, sim_dir: Path) -> Iterator[Kube]:
    yield from one_node(tmp_path, sim_dir)


def _tenants(kube: Kube, sim_dir: Path) -> None:
    kube.apps.create_namespaced_deployment("default", tenant("ollama", "5GiB", 10, CP))
    kube.apps.create_namespaced_deployment("default", tenant("tts", "4GiB", 1, CP))
    kube.running("app=ollama", 1)
    kube.running("app=tts", 1)
    wait_for(lambda: used(sim_dir) == 9 * GIB, what="9 GiB held by the tenants")


def _events(kube: Kube, name: str) -> list[Any]:
    found = kube.core.list_namespaced_event(
        "default", field_selector=f"involvedObject.name={name}"
    ).items
    return sorted(
        (e for e in found if (e.reporting_component or "") == "gpuherd"),
        key=lambda e: e.metadata.creation_timestamp,
    )


def _reasons(kube: Kube, name: str) -> list[str]:
    return [e.reason for e in _events(kube, name)]


def test_a_release_cycle_leaves_events_on_the_workload_and_the_job(
    kube: Kube, sim_dir: Path, tmp_path: Path
) -> None:
    _tenants(kube, sim_dir)
    state = tmp_path / "state"
    with broker(kube.cluster, sim_dir, CP, 0, state):
        kube.batch.create_namespaced_job("default", queued_job("render", "6GiB", 50, "1s"))
        wait_for(
            lambda: "GpuherdRestored" in _reasons(kube, "tts"), timeout=40, what="tts restored"
        )
        wait_for(lambda: "GpuherdFinished" in _reasons(kube, "render"), timeout=20, what="finished")
        [job] = [j for j in cli(state, "jobs", "--all") if j["name"] == "render"]
    assert _reasons(kube, "tts") == ["GpuherdReleased", "GpuherdRestored"]
    assert _reasons(kube, "render") == ["GpuherdAdmitted", "GpuherdFinished"]
    assert _reasons(kube, "ollama") == []  # never touched
    deploy = kube.apps.read_namespaced_deployment("tts", "default")
    released, restored = _events(kube, "tts")
    for e in (released, restored):
        assert e.type == "Normal"
        assert e.source.component == "gpuherd"
        assert e.source.host == CP
        assert e.reporting_component == "gpuherd"
        assert e.reporting_instance == CP
        assert (e.involved_object.kind, e.involved_object.api_version) == ("Deployment", "apps/v1")
        assert e.involved_object.namespace == "default"
        assert e.involved_object.uid == deploy.metadata.uid
        assert e.count == 1
        assert e.first_timestamp is not None
    assert released.message == (
        f"released on node {CP} for gpuherd job {job['id']}: 1 pod(s) scaled away "
        "(restores to 1 replicas)"
    )
    assert restored.message == f"restored to 1 replicas by node {CP}"
    ran = kube.batch.read_namespaced_job("render", "default")
    admitted, finished = _events(kube, "render")
    assert {e.involved_object.uid for e in (admitted, finished)} == {ran.metadata.uid}
    assert admitted.involved_object.kind == "Job"
    assert admitted.message == f"gpuherd job {job['id']} on node {CP}: needs 6Gi, priority 50"
    assert finished.type == "Normal"
    assert finished.message == f"gpuherd job {job['id']} succeeded, exit code 0"
    assert ran.metadata.annotations["gpuherd.io/outcome"] == "succeeded"


def test_refusals_are_warnings_with_the_reason(kube: Kube, sim_dir: Path, tmp_path: Path) -> None:
    _tenants(kube, sim_dir)
    autoscaling: Any = __import__("kubernetes").client.AutoscalingV2Api(kube.api_client)
    autoscaling.create_namespaced_horizontal_pod_autoscaler(
        "default",
        {
            "metadata": {"name": "tts"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "tts"},
                "minReplicas": 1,
                "maxReplicas": 2,
            },
        },
    )
    missing_claim = queued_job("needs-claim", "1GiB", 50)
    pod = missing_claim["spec"]["template"]["spec"]
    pod["volumes"] = [{"name": "out", "persistentVolumeClaim": {"claimName": "renders"}}]
    state = tmp_path / "state"
    with broker(kube.cluster, sim_dir, CP, 0, state):
        kube.batch.create_namespaced_job("default", missing_claim)
        kube.batch.create_namespaced_job("default", queued_job("render", "6GiB", 50, "1s"))
        [claim] = wait_for(lambda: _events(kube, "needs-claim"), timeout=30, what="refused")
        [hpa] = wait_for(
            lambda: [e for e in _events(kube, "tts") if e.reason == "GpuherdRefused"],
            timeout=30, what="the release refused",
        )  # fmt: skip
    assert (claim.reason, claim.type) == ("GpuherdRefused", "Warning")
    assert claim.message == "preflight: claim renders does not exist"
    assert hpa.type == "Warning"
    assert "HorizontalPodAutoscaler tts owns its replicas" in hpa.message
    assert hpa.message.startswith("not released for gpuherd job ")
    assert kube.apps.read_namespaced_deployment("tts", "default").spec.replicas == 1


def test_an_event_never_waits_for_an_api_server_that_does_not_answer(tmp_path: Path) -> None:
    # A listening socket that never answers: each request would wait for its whole timeout.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    port = silent.getsockname()[1]
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    client = KubeClient.load(config)
    recorder = events.Recorder(client, CP, capacity=4)
    recorder.start()
    try:
        involved = events.reference("apps/v1", "Deployment", "default", "tts", None)
        started = time.monotonic()
        for _ in range(50):
            recorder.emit(involved, events.RELEASED, "released")
        assert time.monotonic() - started < 1.0  # queued or dropped, never waited for
        assert recorder.dropped >= 45
        started = time.monotonic()
        recorder.stop(timeout=1.0)
        assert time.monotonic() - started < 3.0
    finally:
        client.close()
        silent.close()


def test_the_simulated_cluster_checks_events_as_the_api_server_does(kube: Kube) -> None:
    body = events.event(
        events.reference("apps/v1", "Deployment", "default", "tts", None),
        events.RELEASED,
        "x" * 2000,
        kind=events.NORMAL,
        node=CP,
        at=time.time(),
    )
    assert len(body["message"]) == 1024  # the API server's limit, cut before sending
    created = kube.core.create_namespaced_event("default", body)
    assert created.involved_object.name == "tts"
    listed = kube.core.list_namespaced_event("default", field_selector="reason=GpuherdReleased")
    assert [e.metadata.name for e in listed.items] == [body["metadata"]["name"]]
    elsewhere = dict(body, metadata={"name": "tts.other", "namespace": "media"})
    kube.core.create_namespace({"metadata": {"name": "media"}})
    with pytest.raises(ApiException) as exc:
        kube.core.create_namespaced_event("media", elsewhere)
    assert exc.value.status == 422
    assert (
        "involvedObject.namespace: Invalid value: 'default': does not match event.namespace"
        in str(exc.value.body)
    )
    # Raw requests: the official client refuses unknown fields itself.
    path = kube.cluster.url + "/api/v1/namespaces/default/events"
    typo = httpx.post(path, json=dict(body, metadata={"name": "e2"}, countt=1))
    assert typo.status_code == 422  # strict schema: an unknown field
    assert "countt" in typo.json()["message"]
    new_style = dict(body, metadata={"name": "e3"}, eventTime="2026-01-01T00:00:00.000000Z")
    new_style.pop("reportingComponent")
    reply = httpx.post(path, json=new_style)
    assert reply.status_code == 422
    assert "reportingComponent: Required value" in reply.json()["message"]
