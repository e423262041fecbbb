"""Watches through the official client's `watch.Watch`: resume from a version, bookmarks,
timeoutSeconds, selector filtering, and history expiry as the in-stream 410 ERROR event."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import watch
from kubernetes.client import ApiException

from tests.simcluster.conftest import Kube

FIXTURES = Path(__file__).parent.parent / "fixtures" / "k8s"


def new_watch() -> Any:
    return watch.Watch()  # type: ignore[no-untyped-call]


def _ns(kube: Kube, name: str) -> str:
    created = kube.core.create_namespace({"metadata": {"name": name}})
    return str(created.metadata.resource_version)


def test_watch_resumes_after_a_version(kube: Kube) -> None:
    rv_a = _ns(kube, "a")
    _ns(kube, "b")
    kube.core.patch_namespace("a", {"metadata": {"labels": {"x": "1"}}})
    kube.core.delete_namespace("b")
    seen = [
        (e["type"], e["object"].metadata.name)
        for e in new_watch().stream(
            kube.core.list_namespace, resource_version=rv_a, timeout_seconds=1
        )
    ]
    assert seen == [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]


def test_watch_without_version_starts_with_the_current_state(kube: Kube) -> None:
    seen = [
        e["object"].metadata.name
        for e in new_watch().stream(kube.core.list_namespace, timeout_seconds=1)
    ]
    assert seen == ["default", "kube-node-lease", "kube-public", "kube-system"]


def test_expired_history_is_an_in_stream_410_the_client_raises(kube: Kube) -> None:
    old = _ns(kube, "a")
    _ns(kube, "b")
    kube.cluster.expire_history()
    with pytest.raises(ApiException) as exc:
        for _event in new_watch().stream(
            kube.core.list_namespace, resource_version=old, timeout_seconds=5
        ):
            pass
    assert exc.value.status == 410
    assert exc.value.reason.startswith("Expired: too old resource version")


def test_in_stream_410_has_the_shape_a_real_server_sends(kube: Kube) -> None:
    _ns(kube, "a")
    kube.cluster.expire_history()
    reply = httpx.get(kube.cluster.url + "/api/v1/namespaces?watch=true&resourceVersion=1")
    assert reply.status_code == 200  # the 410 travels inside the stream, as on a real server
    ours = json.loads(reply.text.splitlines()[0])
    real = json.loads((FIXTURES / "watch_error_410.json").read_text())
    assert ours.keys() == real.keys()
    assert ours["object"].keys() == real["object"].keys()
    for key in ("kind", "apiVersion", "status", "reason", "code"):
        assert ours["object"][key] == real["object"][key]
    assert ours["object"]["message"].startswith("too old resource version: 1 (")


def test_admin_endpoint_expires_history(kube: Kube) -> None:
    rv = _ns(kube, "a")
    reply = httpx.post(kube.cluster.url + "/simcluster/v1/expire-history")
    assert reply.json() == {"compacted": int(rv)}
    lines = httpx.get(
        kube.cluster.url + f"/api/v1/namespaces?watch=true&resourceVersion={int(rv) - 1}"
    ).text.splitlines()
    assert json.loads(lines[0])["object"]["code"] == 410


def test_a_live_watch_sees_changes_and_bookmarks(kube: Kube) -> None:
    rv = _ns(kube, "start")
    events: list[tuple[str, Any]] = []
    stream = new_watch()

    def follow() -> None:
        for event in stream.stream(
            kube.core.list_namespace,
            resource_version=rv,
            allow_watch_bookmarks=True,
            timeout_seconds=3,
        ):
            events.append((event["type"], event["object"]))

    reader = threading.Thread(target=follow)
    reader.start()
    time.sleep(0.5)
    created = _ns(kube, "live")
    reader.join(timeout=10)
    assert not reader.is_alive(), "timeoutSeconds ends the stream"
    kinds = [kind for kind, _ in events]
    assert ("ADDED", "live") in [(k, o.metadata.name) for k, o in events if k != "BOOKMARK"]
    bookmarks = [o for k, o in events if k == "BOOKMARK"]
    assert bookmarks, kinds
    # A bookmark's version is one the client can resume from: nothing it has seen repeats.
    assert int(bookmarks[-1]["metadata"]["resourceVersion"]) >= int(created)
    assert stream.resource_version == bookmarks[-1]["metadata"]["resourceVersion"]


def test_watch_with_a_field_selector_sees_pods_enter_and_leave(kube: Kube) -> None:
    rv = kube.core.list_namespaced_pod("default").metadata.resource_version
    pod = {
        "metadata": {"name": "p"},
        "spec": {
            "nodeName": "k3s-gpu-02",
            "containers": [{"name": "c", "image": "x", "command": ["sleep", "30"]}],
            "terminationGracePeriodSeconds": 2,
        },
    }
    kube.core.create_namespaced_pod("default", pod)
    kube.core.create_namespaced_pod(
        "default",
        {
            "metadata": {"name": "elsewhere"},
            "spec": {
                "nodeName": "k3s-cp-01",
                "containers": [{"name": "c", "image": "x", "command": ["sleep", "30"]}],
            },
        },
    )
    kube.running("", 2)
    kube.core.delete_namespaced_pod("p", "default")
    seen: list[tuple[str, str | None]] = []
    for event in new_watch().stream(
        kube.core.list_pod_for_all_namespaces,
        field_selector="spec.nodeName=k3s-gpu-02",
        resource_version=rv,
        timeout_seconds=4,
    ):
        seen.append((event["type"], event["object"].status.phase))
        assert event["object"].metadata.name == "p"
        if event["type"] == "DELETED":
            break
    assert seen[0] == ("ADDED", "Pending")
    assert ("MODIFIED", "Running") in seen
    assert seen[-1][0] == "DELETED"


def test_stopping_the_cluster_ends_open_watches(tmp_path: Path, sim_dir: Path) -> None:
    from gpuherd.simcluster import NodeSpec
    from tests.simcluster.conftest import start_cluster

    cluster = start_cluster(tmp_path, sim_dir, [NodeSpec("only", (0,))])
    kube = next(cluster)
    ended = threading.Event()

    def follow() -> None:
        try:
            for _event in new_watch().stream(kube.core.list_namespace, timeout_seconds=300):
                pass
        except Exception:
            pass
        ended.set()

    reader = threading.Thread(target=follow)
    reader.start()
    time.sleep(0.5)
    began = time.monotonic()
    with pytest.raises(StopIteration):
        next(cluster)  # stops the cluster
    assert ended.wait(10)
    assert time.monotonic() - began < 10
    reader.join()
