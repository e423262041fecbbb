"""The API server through the official client: CRUD, errors as Status objects, selectors,
the three patch types, resourceVersion preconditions, the scale subresource, pagination."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from kubernetes.client import ApiException

from tests.simcluster.conftest import Kube, deployment


def _status(exc: ApiException) -> dict[str, object]:
    body = json.loads(exc.body or "{}")
    assert isinstance(body, dict)
    return body


def test_nodes_carry_gpu_capacity_and_device_plugin_labels(kube: Kube) -> None:
    nodes = {n.metadata.name: n for n in kube.core.list_node().items}
    assert set(nodes) == {"k3s-cp-01", "k3s-gpu-02"}
    cp = nodes["k3s-cp-01"]
    assert cp.status.capacity["nvidia.com/gpu"] == "1"
    assert cp.status.allocatable["nvidia.com/gpu"] == "1"
    assert cp.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-GeForce-RTX-3080-Ti"
    assert cp.metadata.labels["nvidia.com/gpu.memory"] == str(12 * 1024)
    assert nodes["k3s-gpu-02"].metadata.labels["nvidia.com/gpu.product"] == (
        "NVIDIA-RTX-4000-Ada-Generation"
    )
    ready = [c for c in cp.status.conditions if c.type == "Ready"]
    assert ready[0].status == "True"


def test_create_get_list_delete_and_status_errors(kube: Kube) -> None:
    core = kube.core
    ns = core.create_namespace({"metadata": {"name": "media"}})
    assert ns.status.phase == "Active"
    lease = kube.coordination.create_namespaced_lease(
        "media",
        {
            "metadata": {"name": "gpu-0"},
            "spec": {"holderIdentity": "node-a", "leaseDurationSeconds": 15},
        },
    )
    rv = int(lease.metadata.resource_version)
    assert rv > int(ns.metadata.resource_version)
    got = kube.coordination.read_namespaced_lease("gpu-0", "media")
    assert got.spec.holder_identity == "node-a"
    with pytest.raises(ApiException) as exc:
        kube.coordination.create_namespaced_lease("media", {"metadata": {"name": "gpu-0"}})
    assert exc.value.status == 409
    assert _status(exc.value)["reason"] == "AlreadyExists"
    assert _status(exc.value)["message"] == 'leases.coordination.k8s.io "gpu-0" already exists'
    with pytest.raises(ApiException) as exc:
        kube.coordination.read_namespaced_lease("nope", "media")
    assert exc.value.status == 404
    assert _status(exc.value)["details"] == {
        "name": "nope",
        "group": "coordination.k8s.io",
        "kind": "leases",
    }
    kube.coordination.delete_namespaced_lease("gpu-0", "media")
    assert kube.coordination.list_namespaced_lease("media").items == []
    with pytest.raises(ApiException) as exc:
        kube.coordination.create_namespaced_lease("nowhere", {"metadata": {"name": "x"}})
    assert exc.value.status == 404
    assert _status(exc.value)["message"] == 'namespaces "nowhere" not found'


def test_invalid_bodies_get_422_with_the_field(kube: Kube) -> None:
    # The official client checks types itself, so the raw body goes over HTTP here.
    url = kube.cluster.url + "/api/v1/namespaces/default/pods"
    reply = httpx.post(
        url,
        json={
            "metadata": {"name": "x"},
            "spec": {"containers": [{"name": "a", "image": "b", "gpus": 1}]},
        },
    )
    assert reply.status_code == 422
    body = reply.json()
    assert body["kind"] == "Status"
    assert body["reason"] == "Invalid"
    assert body["code"] == 422
    assert body["details"]["causes"][0]["field"] == "spec.containers[0]"
    assert "'gpus' was unexpected" in body["message"]
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j"},
        "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "b"}]}}},
    }
    reply = httpx.post(kube.cluster.url + "/apis/batch/v1/namespaces/default/jobs", json=job)
    assert reply.status_code == 422
    assert reply.json()["details"]["causes"][0]["field"] == "spec.template.spec.restartPolicy"


def test_stale_resource_version_is_409_on_put_and_patch(kube: Kube) -> None:
    apps = kube.apps
    first = apps.create_namespaced_deployment(
        "default", deployment("web", ["sleep", "60"], replicas=0)
    )
    apps.patch_namespaced_deployment("web", "default", {"metadata": {"labels": {"a": "1"}}})
    first.spec.replicas = 0
    with pytest.raises(ApiException) as exc:
        apps.replace_namespaced_deployment("web", "default", first)
    assert exc.value.status == 409
    assert _status(exc.value)["reason"] == "Conflict"
    assert "the object has been modified" in str(_status(exc.value)["message"])
    stale = first.metadata.resource_version
    with pytest.raises(ApiException) as exc:
        apps.patch_namespaced_deployment(
            "web", "default", {"metadata": {"resourceVersion": stale, "labels": {"b": "2"}}}
        )
    assert exc.value.status == 409
    fresh = apps.read_namespaced_deployment("web", "default")
    assert fresh.metadata.labels == {"a": "1"}
    assert fresh.metadata.generation == 1  # labels are not spec


def test_scale_subresource_with_version_precondition(kube: Kube) -> None:
    apps = kube.apps
    apps.create_namespaced_deployment("default", deployment("llm", ["sleep", "60"], replicas=0))
    scale = apps.read_namespaced_deployment_scale("llm", "default")
    assert scale.kind == "Scale"
    assert scale.api_version == "autoscaling/v1"
    assert scale.spec.replicas == 0
    assert scale.status.selector == "app=llm"
    scale.spec.replicas = 2
    done = apps.replace_namespaced_deployment_scale("llm", "default", scale)
    assert done.spec.replicas == 2
    assert int(done.metadata.resource_version) > int(scale.metadata.resource_version)
    with pytest.raises(ApiException) as exc:  # the same stale version again
        apps.replace_namespaced_deployment_scale("llm", "default", scale)
    assert exc.value.status == 409
    patched = apps.patch_namespaced_deployment_scale("llm", "default", {"spec": {"replicas": 0}})
    assert patched.spec.replicas == 0
    deploy = apps.read_namespaced_deployment("llm", "default")
    assert deploy.spec.replicas == 0
    assert deploy.metadata.generation == 3


def test_patch_types(kube: Kube) -> None:
    apps = kube.apps
    body = deployment("app", ["sleep", "60"], replicas=0)
    body["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "A", "value": "1"}]
    apps.create_namespaced_deployment("default", body)
    # strategic merge (the client's default for a dict): containers merge by name, env by name
    apps.patch_namespaced_deployment(
        "app",
        "default",
        {
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": "app", "env": [{"name": "B", "value": "2"}]}]}
                }
            }
        },
    )
    got = apps.read_namespaced_deployment("app", "default")
    container = got.spec.template.spec.containers[0]
    assert container.command == ["sleep", "60"]
    assert [(e.name, e.value) for e in container.env] == [("A", "1"), ("B", "2")]
    # JSON patch (the client's choice for a list)
    apps.patch_namespaced_deployment(
        "app",
        "default",
        [
            {"op": "add", "path": "/metadata/annotations", "value": {"gpuherd.io/vram": "4Gi"}},
            {"op": "replace", "path": "/spec/replicas", "value": 0},
        ],
    )
    # merge patch: lists replace, null deletes
    reply = httpx.patch(
        kube.cluster.url + "/apis/apps/v1/namespaces/default/deployments/app",
        headers={"Content-Type": "application/merge-patch+json"},
        content=json.dumps({"metadata": {"annotations": {"gpuherd.io/vram": None, "x": "y"}}}),
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["metadata"]["annotations"] == {"x": "y"}
    reply = httpx.patch(
        kube.cluster.url + "/apis/apps/v1/namespaces/default/deployments/app",
        headers={"Content-Type": "application/apply-patch+yaml"},
        content="{}",
    )
    assert reply.status_code == 415


def names(items: list[Any]) -> list[str]:
    return sorted(p.metadata.name for p in items)


def test_label_and_field_selectors_and_pagination(kube: Kube) -> None:
    core = kube.core
    for i, (app, node) in enumerate([("a", "k3s-cp-01"), ("a", "k3s-gpu-02"), ("b", None)]):
        spec: dict[str, Any] = {
            "containers": [{"name": "c", "image": "x", "command": ["sleep", "60"]}]
        }
        # p2 matches no node, so it stays unbound
        spec.update({"nodeName": node} if node else {"nodeSelector": {"disk": "ssd"}})
        core.create_namespaced_pod(
            "default",
            {
                "metadata": {
                    "name": f"p{i}",
                    "labels": {"app": app, "tier": "gpu" if node else "cpu"},
                },
                "spec": spec,
            },
        )
    assert names(kube.pods("app=a")) == ["p0", "p1"]
    assert names(kube.pods("app in (a,b),tier!=gpu")) == ["p2"]
    assert names(kube.pods("!tier")) == []
    on_cp = core.list_pod_for_all_namespaces(field_selector="spec.nodeName=k3s-cp-01")
    assert names(on_cp.items) == ["p0"]
    by_name = core.list_namespaced_pod("default", field_selector="metadata.name=p1")
    assert names(by_name.items) == ["p1"]
    with pytest.raises(ApiException) as exc:
        core.list_namespaced_pod("default", field_selector="spec.bogus=1")
    assert exc.value.status == 400
    page = core.list_namespaced_pod("default", limit=2)
    assert len(page.items) == 2
    assert page.metadata._continue
    rest = core.list_namespaced_pod("default", limit=2, _continue=page.metadata._continue)
    assert names(page.items + rest.items) == ["p0", "p1", "p2"]
    assert rest.metadata.resource_version == page.metadata.resource_version


def test_exact_list_from_expired_version_is_410(kube: Kube) -> None:
    first = kube.core.list_namespace()
    old = first.metadata.resource_version
    kube.core.create_namespace({"metadata": {"name": "later"}})
    then = kube.core.list_namespace(resource_version=old, resource_version_match="Exact")
    assert "later" not in [n.metadata.name for n in then.items]
    kube.cluster.expire_history()
    with pytest.raises(ApiException) as exc:
        kube.core.list_namespace(resource_version=old, resource_version_match="Exact")
    assert exc.value.status == 410
    assert _status(exc.value)["reason"] == "Expired"


def test_cluster_objects_the_broker_reads(kube: Kube) -> None:
    from kubernetes import client

    storage: Any = client.StorageV1Api(kube.api_client)
    node_api: Any = client.NodeV1Api(kube.api_client)
    autoscaling: Any = client.AutoscalingV2Api(kube.api_client)
    storage.create_storage_class(
        {
            "metadata": {"name": "local-path"},
            "provisioner": "rancher.io/local-path",
            "volumeBindingMode": "WaitForFirstConsumer",
        }
    )
    kube.core.create_persistent_volume(
        {
            "metadata": {"name": "pv-render"},
            "spec": {
                "capacity": {"storage": "10Gi"},
                "accessModes": ["ReadWriteOnce"],
                "hostPath": {"path": "/srv/render"},
                "claimRef": {"namespace": "default", "name": "render-data"},
                "nodeAffinity": {
                    "required": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {
                                        "key": "kubernetes.io/hostname",
                                        "operator": "In",
                                        "values": ["k3s-cp-01"],
                                    }
                                ]
                            }
                        ]
                    }
                },
            },
        }
    )
    kube.core.create_namespaced_persistent_volume_claim(
        "default",
        {
            "metadata": {"name": "render-data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "volumeName": "pv-render",
                "resources": {"requests": {"storage": "10Gi"}},
            },
        },
    )
    pvc = kube.core.read_namespaced_persistent_volume_claim("render-data", "default")
    assert pvc.status.phase == "Bound"
    assert pvc.spec.volume_name == "pv-render"
    pv = kube.core.read_persistent_volume("pv-render")
    assert pv.spec.node_affinity.required.node_selector_terms[0].match_expressions[0].values == [
        "k3s-cp-01"
    ]
    node_api.create_runtime_class({"metadata": {"name": "nvidia"}, "handler": "nvidia"})
    hpa = autoscaling.create_namespaced_horizontal_pod_autoscaler(
        "default",
        {
            "metadata": {"name": "ollama"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ollama"},
                "minReplicas": 1,
                "maxReplicas": 3,
            },
        },
    )
    assert hpa.spec.scale_target_ref.name == "ollama"
    kube.core.create_namespaced_event(
        "default",
        {
            "metadata": {"name": "ollama.released"},
            "involvedObject": {"kind": "Deployment", "name": "ollama", "namespace": "default"},
            "reason": "Released",
            "message": "scaled to 0 for render",
            "type": "Normal",
        },
    )
    events = kube.core.list_namespaced_event("default", field_selector="involvedObject.name=ollama")
    assert [e.reason for e in events.items] == ["Released"]


def test_fixed_fields_cannot_change(kube: Kube) -> None:
    kube.apps.create_namespaced_deployment("default", deployment("d", ["sleep", "60"]))
    with pytest.raises(ApiException) as exc:
        kube.apps.patch_namespaced_deployment(
            "d",
            "default",
            {
                "spec": {
                    "selector": {"matchLabels": {"app": "other"}},
                    "template": {"metadata": {"labels": {"app": "other"}}},
                }
            },
        )
    assert exc.value.status == 422
    assert str(_status(exc.value)["message"]).startswith(
        'Deployment.apps "d" is invalid: spec.selector: Invalid value'
    )
    [pod] = kube.running("app=d", 1)
    name = pod.metadata.name
    kube.core.patch_namespaced_pod(
        name,
        "default",
        {"metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": "-1"}}},
    )
    with pytest.raises(ApiException) as exc:
        kube.core.patch_namespaced_pod(
            name, "default", {"spec": {"containers": [{"name": "d", "command": ["true"]}]}}
        )
    assert exc.value.status == 422
    assert "pod updates may not change fields" in str(_status(exc.value)["message"])


def test_orphan_deletion_keeps_the_dependents(kube: Kube) -> None:
    from kubernetes import client

    kube.apps.create_namespaced_deployment("default", deployment("keep", ["sleep", "60"]))
    [pod] = kube.running("app=keep", 1)
    kube.apps.delete_namespaced_deployment(
        "keep", "default", body=client.V1DeleteOptions(propagation_policy="Orphan")
    )
    [rs] = kube.apps.list_namespaced_replica_set("default").items
    assert rs.metadata.owner_references is None
    # the orphaned ReplicaSet still owns and keeps its pod
    assert [p.metadata.uid for p in kube.running("app=keep", 1)] == [pod.metadata.uid]


def test_two_writers_of_one_lease_one_wins(kube: Kube) -> None:
    coordination = kube.coordination
    coordination.create_namespaced_lease(
        "default", {"metadata": {"name": "job-render"}, "spec": {"holderIdentity": ""}}
    )
    seen = coordination.read_namespaced_lease("job-render", "default")
    results = []
    for node in ("k3s-cp-01", "k3s-gpu-02"):  # both read the same version, then write
        seen.spec.holder_identity = node
        try:
            coordination.replace_namespaced_lease("job-render", "default", seen)
            results.append(node)
        except ApiException as exc:
            results.append(exc.status)
    assert results == ["k3s-cp-01", 409]
    assert (
        coordination.read_namespaced_lease("job-render", "default").spec.holder_identity
        == "k3s-cp-01"
    )
