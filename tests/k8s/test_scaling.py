"""The kubernetes release method on the simulated cluster: pods holding simulated VRAM scaled
away with the restore annotations and back, and the owners of `spec.replicas` respected."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpuherd.actuators.base import ActContext, ActuatorError
from gpuherd.actuators.factory import actuator_for
from gpuherd.k8s import leases, session
from gpuherd.k8s.client import KubeClient
from gpuherd.k8s.pods import PodCache
from gpuherd.spec.model import KubernetesMethod
from tests.k8s.broker import used
from tests.k8s.conftest import hold
from tests.simcluster.conftest import Kube, deployment, wait_for

GIB = 1024**3
NODE = "k3s-cp-01"


@pytest.fixture
def mode(kc: KubeClient) -> Iterator[session.Session]:
    s = session.Session(kc, NODE, PodCache(kc, NODE))
    session.use(s)
    yield s
    session.use(None)


def _ctx(tmp_path: Path) -> ActContext:
    return ActContext(
        tenant="t", pids=(), log_dir=tmp_path, timeout=20, env={"GPUHERD_RELEASE_FOR": "j1"}
    )


def _pinned(name: str, command: list[str], node: str = NODE, **kw: Any) -> dict[str, Any]:
    body = deployment(name, command, **kw)
    body["spec"]["template"]["spec"]["nodeSelector"] = {"kubernetes.io/hostname": node}
    return body


def _notes(kube: Kube, name: str) -> dict[str, str]:
    return dict(kube.apps.read_namespaced_deployment(name, "default").metadata.annotations or {})


def test_release_annotates_scales_to_zero_and_restore_brings_it_back(
    kube: Kube, mode: session.Session, sim_dir: Path, tmp_path: Path
) -> None:
    kube.apps.create_namespaced_deployment(
        "default", _pinned("ollama", hold("4GiB", "ollama"), gpus=1)
    )
    kube.running("app=ollama", 1)
    wait_for(lambda: used(sim_dir, 0) == 4 * GIB, what="4 GiB held")
    actuator = actuator_for(KubernetesMethod(name="ollama"))
    detail = actuator.release(_ctx(tmp_path))
    assert detail["replicas"] == 1
    notes = _notes(kube, "ollama")
    assert notes["gpuherd.io/restore-replicas"] == "1"
    assert notes["gpuherd.io/released-by"] == f"{NODE}/j1"
    assert notes["gpuherd.io/released-at"].endswith("Z")
    assert kube.apps.read_namespaced_deployment_scale("ollama", "default").spec.replicas == 0
    wait_for(lambda: used(sim_dir, 0) == 0, what="the VRAM freed")
    lease = kube.coordination.read_namespaced_lease("gpuherd-workload-deployment-ollama", "default")
    assert lease.spec.holder_identity == NODE  # no other broker acts on it while released
    actuator.restore(_ctx(tmp_path), detail)
    assert kube.apps.read_namespaced_deployment("ollama", "default").status.ready_replicas == 1
    assert not kube.coordination.list_namespaced_lease("default").items
    assert not any(k.startswith("gpuherd.io/") for k in _notes(kube, "ollama"))
    wait_for(lambda: used(sim_dir, 0) == 4 * GIB, what="the VRAM held again")


def test_an_hpa_owned_workload_is_refused_with_the_reason(
    kube: Kube, mode: session.Session, tmp_path: Path
) -> None:
    kube.apps.create_namespaced_deployment("default", _pinned("whisper", ["sleep", "60"]))
    kube.running("app=whisper", 1)
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "whisper"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "whisper"},
            "minReplicas": 1,
            "maxReplicas": 3,
        },
    }
    autoscaling: Any = __import__("kubernetes").client.AutoscalingV2Api(kube.api_client)
    autoscaling.create_namespaced_horizontal_pod_autoscaler("default", hpa)
    with pytest.raises(ActuatorError, match="HorizontalPodAutoscaler whisper owns"):
        actuator_for(KubernetesMethod(name="whisper")).release(_ctx(tmp_path))
    assert kube.apps.read_namespaced_deployment_scale("whisper", "default").spec.replicas == 1
    assert not _notes(kube, "whisper")


def test_keda_is_paused_through_its_annotation_and_resumed(
    kube: Kube, mode: session.Session, tmp_path: Path
) -> None:
    kube.apps.create_namespaced_deployment("default", _pinned("tts", ["sleep", "60"]))
    kube.running("app=tts", 1)
    custom: Any = __import__("kubernetes").client.CustomObjectsApi(kube.api_client)
    custom.create_namespaced_custom_object(
        "keda.sh",
        "v1alpha1",
        "default",
        "scaledobjects",
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {"name": "tts"},
            "spec": {"scaleTargetRef": {"name": "tts"}, "minReplicaCount": 1},
        },
    )
    actuator = actuator_for(KubernetesMethod(name="tts"))
    detail = wait_for(lambda: _keda_release(actuator, tmp_path), what="KEDA's HPA in place")
    assert detail["keda"] == "tts"

    def paused() -> str | None:
        so = custom.get_namespaced_custom_object(
            "keda.sh", "v1alpha1", "default", "scaledobjects", "tts"
        )
        return (so["metadata"].get("annotations") or {}).get("autoscaling.keda.sh/paused-replicas")

    assert paused() == "0"
    wait_for(lambda: not kube.pods("app=tts"), what="KEDA scaled it to 0")
    actuator.restore(_ctx(tmp_path), detail)
    assert paused() is None
    kube.running("app=tts", 1)


def _keda_release(actuator: Any, tmp_path: Path) -> dict[str, Any] | None:
    hpas = actuator._session().client.list_hpas("default")
    if not hpas:
        return None
    return dict(actuator.release(_ctx(tmp_path)))


def test_only_this_nodes_pod_leaves_a_deployment_spread_over_nodes(
    kube: Kube, mode: session.Session, tmp_path: Path
) -> None:
    kube.apps.create_namespaced_deployment(
        "default", deployment("tts", ["sleep", "60"], replicas=2)
    )
    pods = kube.running("app=tts", 2)
    assert {p.spec.node_name for p in pods} == {NODE, "k3s-gpu-02"}
    actuator = actuator_for(KubernetesMethod(name="tts"))
    detail = actuator.release(_ctx(tmp_path))
    assert detail == {
        "workload": "deployment/default/tts",
        "replicas": 2,
        "removed": 1,
        "keda": None,
    }
    [left] = kube.running("app=tts", 1)
    assert left.spec.node_name == "k3s-gpu-02"
    actuator.restore(_ctx(tmp_path), detail)
    kube.running("app=tts", 2)


def test_a_statefulset_with_pods_elsewhere_is_refused(
    kube: Kube, mode: session.Session, tmp_path: Path
) -> None:
    body = deployment("db", ["sleep", "60"], replicas=2)
    body["kind"] = "StatefulSet"
    body["spec"]["serviceName"] = "db"
    kube.apps.create_namespaced_stateful_set("default", body)
    kube.running("app=db", 2)
    method = KubernetesMethod.model_validate({"kind": "StatefulSet", "name": "db"})
    with pytest.raises(ActuatorError, match="highest ordinals"):
        actuator_for(method).release(_ctx(tmp_path))
    assert kube.apps.read_namespaced_stateful_set_scale("db", "default").spec.replicas == 2


def test_a_workload_another_broker_is_releasing_is_refused(
    kube: Kube, mode: session.Session, tmp_path: Path
) -> None:
    kube.apps.create_namespaced_deployment(
        "default", deployment("tts", ["sleep", "60"], replicas=2)
    )
    kube.running("app=tts", 2)
    name = leases.lease_name("workload", "Deployment", "tts")
    assert leases.acquire(mode.client, "default", name, "k3s-gpu-02", seconds=600)
    with pytest.raises(ActuatorError, match="another node's broker is releasing it"):
        actuator_for(KubernetesMethod(name="tts")).release(_ctx(tmp_path))
    assert kube.apps.read_namespaced_deployment_scale("tts", "default").spec.replicas == 2
    assert leases.holds(mode.client, "default", name, "k3s-gpu-02")  # not taken from it
