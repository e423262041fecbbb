"""The kubernetes release method on the simulated cluster: pods holding simulated VRAM scaled
away with the restore annotations and back, and the owners of `spec.replicas` respected."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gpuherd.actuators.base import ActContext, ActuatorError
from gpuherd.actuators.factory import actuator_for
from gpuherd.k8s import scaling, session
from gpuherd.k8s.client import KubeClient, KubeError, Ref
from gpuherd.k8s.gpulease import GpuLeases
from gpuherd.k8s.pods import PodCache
from gpuherd.spec.model import KubernetesMethod
from tests.k8s.broker import used
from tests.k8s.conftest import hold
from tests.simcluster.conftest import Kube, deployment, wait_for

GIB = 1024**3
NODE, OTHER = "k3s-cp-01", "k3s-gpu-02"


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
    # The method takes no lease of its own: the GPU's (the keeper's claim) covers the release.
    assert not kube.coordination.list_namespaced_lease("default").items
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


def _released_by(kube: Kube, node: str, job: str, ago: float) -> None:
    """Annotate tts as another broker's release would, `ago` seconds back."""
    at = datetime.fromtimestamp(time.time() - ago, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    notes = {
        "gpuherd.io/restore-replicas": "2",
        "gpuherd.io/released-by": f"{node}/{job}",
        "gpuherd.io/released-at": at,
    }
    kube.apps.patch_namespaced_deployment("tts", "default", {"metadata": {"annotations": notes}})


def _spread_tts(kube: Kube) -> None:
    kube.apps.create_namespaced_deployment(
        "default", deployment("tts", ["sleep", "60"], replicas=2)
    )
    kube.running("app=tts", 2)


def test_a_workload_another_node_released_is_left_to_it_while_its_gpu_lease_lives(
    kube: Kube, mode: session.Session, tmp_path: Path
) -> None:
    _spread_tts(kube)
    other = GpuLeases(mode.client, OTHER, "default")
    assert other.hold("GPU-1")
    _released_by(kube, OTHER, "j9", ago=600)  # long ago, but its broker renews its lease
    actuator = actuator_for(KubernetesMethod(name="tts"))
    with pytest.raises(ActuatorError, match=f"released by node {OTHER} for job j9"):
        actuator.release(_ctx(tmp_path))
    assert kube.apps.read_namespaced_deployment_scale("tts", "default").spec.replicas == 2
    assert _notes(kube, "tts")["gpuherd.io/released-by"] == f"{OTHER}/j9"

    other.keep(set())  # its broker is gone: no lease renewed any more
    detail = actuator.release(_ctx(tmp_path))  # taken over, its number to restore kept
    notes = _notes(kube, "tts")
    assert notes["gpuherd.io/released-by"] == f"{NODE}/j1"
    assert notes["gpuherd.io/restore-replicas"] == "2"
    ref = Ref("Deployment", "default", "tts")
    with pytest.raises(KubeError, match=f"node {NODE} took it over for job j1"):
        # Its broker, back with its journal, leaves it to the node that took it over.
        scaling.restore(mode.client, ref, replicas=2, keda=None, timeout=5, node=OTHER)
    actuator.restore(_ctx(tmp_path), detail)
    kube.running("app=tts", 2)
    assert not any(k.startswith("gpuherd.io/") for k in _notes(kube, "tts"))


def test_a_release_too_recent_for_its_lease_to_show_is_not_taken_over(
    kube: Kube, mode: session.Session, tmp_path: Path
) -> None:
    _spread_tts(kube)
    _released_by(kube, OTHER, "j9", ago=5)  # its lease may not have reached any watch yet
    with pytest.raises(ActuatorError, match=f"released by node {OTHER}"):
        actuator_for(KubernetesMethod(name="tts")).release(_ctx(tmp_path))
    assert kube.apps.read_namespaced_deployment_scale("tts", "default").spec.replicas == 2


def test_of_two_brokers_annotating_one_workload_at_once_the_second_gets_a_409_and_backs_off(
    kube: Kube, mode: session.Session
) -> None:
    _spread_tts(kube)
    ref = Ref("Deployment", "default", "tts")
    both_read = mode.client.get_workload(ref)  # each broker's watch shows the same version
    first = scaling.release(mode.client, ref, node=OTHER, job="j9", workload=both_read)
    assert first.removed == 1
    before = mode.client.requests
    with pytest.raises(scaling.Refused, match=f"released by node {OTHER} for job j9"):
        scaling.release(mode.client, ref, node=NODE, job="j1", workload=both_read)
    # Its annotation PATCH was refused (409), it read the workload again and stopped there.
    assert mode.client.requests - before <= 6
    assert _notes(kube, "tts")["gpuherd.io/released-by"] == f"{OTHER}/j9"
    assert kube.apps.read_namespaced_deployment_scale("tts", "default").spec.replicas == 1
