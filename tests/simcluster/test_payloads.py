"""What the simulated server returns has the keys and shapes real API servers return
(recorded payloads in tests/fixtures/k8s, sources in SOURCES.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.simcluster.conftest import Kube, wait_for

FIXTURES = Path(__file__).parent.parent / "fixtures" / "k8s"


def _load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@pytest.mark.parametrize(
    ("path", "fixture"),
    [
        ("/api/v1", "discovery_api_v1.json"),
        ("/apis/apps/v1", "discovery_apps_v1.json"),
        ("/apis/batch/v1", "discovery_batch_v1.json"),
    ],
)
def test_discovery_matches_the_recorded_documents(kube: Kube, path: str, fixture: str) -> None:
    ours = httpx.get(kube.cluster.url + path).json()
    real = _load(fixture)
    assert {k: v for k, v in ours.items() if k != "resources"} == {
        k: v for k, v in real.items() if k != "resources"
    }
    recorded = {r["name"]: r for r in real["resources"]}
    served = {r["name"]: r for r in ours["resources"]}
    assert served, path
    for name, entry in served.items():
        assert name in recorded, f"{name} is not served by a real {path}"
        want = recorded[name]
        for key in (
            "kind",
            "namespaced",
            "singularName",
            "shortNames",
            "categories",
            "group",
            "version",
        ):
            assert entry.get(key) == want.get(key), (name, key)
        assert set(want["verbs"]) <= set(entry["verbs"]), name


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


def _missing(real: Any, ours: Any, path: str = "") -> list[str]:
    """Keys of `real` that `ours` lacks, recursively (first list items compared)."""
    if isinstance(real, dict) and isinstance(ours, dict):
        out = []
        for key, value in real.items():
            if key not in ours:
                out.append(f"{path}.{key}")
            else:
                out += _missing(value, ours[key], f"{path}.{key}")
        return out
    if isinstance(real, list) and isinstance(ours, list) and real and ours:
        return _missing(real[0], ours[0], f"{path}[0]")
    return []


def test_a_running_replicaset_pod_has_the_recorded_shape(kube: Kube) -> None:
    kube.apps.create_namespaced_deployment(
        "default",
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "queue"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "work-queue"}},
                "template": {
                    "metadata": {"labels": {"app": "work-queue"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "queue",
                                "image": "gcr.io/kuar-demo/kuard-amd64:1",
                                "command": [sys.executable, "-c", "import time; time.sleep(60)"],
                            }
                        ]
                    },
                },
            },
        },
    )
    wait_for(
        lambda: [
            p
            for p in kube.pods("app=work-queue")
            if p.status.container_statuses and p.status.container_statuses[0].ready
        ],
        what="ready pod",
    )
    ours = httpx.get(kube.cluster.url + "/api/v1/namespaces/default/pods").json()["items"][0]
    real = _load("pod_running.json")
    # Service-account token volumes are not simulated (no tokens at all).
    real["spec"].pop("volumes")
    real["spec"]["containers"][0].pop("volumeMounts")
    real["metadata"]["labels"] = {"app": "work-queue"}
    assert _missing(real, ours) == []
    assert ours["spec"]["tolerations"] == real["spec"]["tolerations"]
    for key in ("metadata", "status"):
        for field in ("uid", "resourceVersion", "creationTimestamp"):
            if field in real[key]:
                assert _shape(ours[key][field]) == _shape(real[key][field])
    assert [c["type"] for c in ours["status"]["conditions"]] >= ["Initialized"]
    assert ours["status"]["containerStatuses"][0]["state"].keys() == {"running"}
    assert (
        ours["metadata"]["ownerReferences"][0].keys()
        == real["metadata"]["ownerReferences"][0].keys()
    )
