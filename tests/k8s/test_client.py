"""gpuherd's API client against the simulated API server: scale with a version precondition
(409 retried), the node's pod cache surviving an expired history (410), errors mapped, the
requests the same as the official client's generated methods send, and none of the client's
generated models imported by what the broker does."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from gpuherd.k8s.client import MERGE, Conflict, Gone, KubeClient, KubeError, NotFound, Ref
from gpuherd.k8s.pods import PodCache
from gpuherd.simcluster import NodeSpec, SimCluster
from tests.simcluster.conftest import Kube, deployment, wait_for

REF = Ref("Deployment", "default", "tts")


class _Interfering(KubeClient):
    """Someone else writes the workload between our read of the scale and our write, twice."""

    def __init__(self, api_client: Any, other: Kube) -> None:
        super().__init__(api_client)
        self.other, self.left = other, 2

    def read_scale(self, ref: Ref) -> tuple[int, str]:
        seen = super().read_scale(ref)
        if self.left:
            self.left -= 1
            patch = {"metadata": {"annotations": {"example.com/touched": str(self.left)}}}
            self.other.apps.patch_namespaced_deployment(ref.name, ref.namespace, patch)
        return seen


def test_a_stale_scale_is_refused_with_409_and_retried(kube: Kube, kc: KubeClient) -> None:
    kube.apps.create_namespaced_deployment("default", deployment("tts", ["sleep", "60"]))
    # The controller's status writes would be conflicts too: only ours count below.
    wait_for(lambda: _settled(kube, "tts"), what="the Deployment's status settled")
    _, version = kc.read_scale(REF)
    kube.apps.patch_namespaced_deployment("tts", "default", {"metadata": {"labels": {"x": "y"}}})
    with pytest.raises(Conflict):
        kc.write_scale(REF, 0, version)
    racing = _Interfering(kc.api_client, kube)
    assert racing.scale(REF, 3) == 1
    assert racing.conflicts == 2, racing.conflicts
    assert kube.apps.read_namespaced_deployment_scale("tts", "default").spec.replicas == 3


def _settled(kube: Kube, name: str) -> bool:
    d = kube.apps.read_namespaced_deployment(name, "default")
    ready = d.status.ready_replicas == d.spec.replicas
    return bool(ready and d.status.observed_generation == d.metadata.generation)


def test_missing_objects_raise_not_found(kc: KubeClient) -> None:
    with pytest.raises(NotFound, match="nope"):
        kc.get_workload(Ref("Deployment", "default", "nope"))


def test_pod_cache_relists_once_after_410_and_keeps_following(
    tmp_path: Path, sim_dir: Path
) -> None:
    nodes = [NodeSpec("k3s-cp-01", (0,)), NodeSpec("k3s-gpu-02", (1,))]
    # Bookmarks rarer than the watch's own timeout: its version goes stale on purpose.
    with SimCluster(
        directory=tmp_path / "c", nodes=nodes, sim_dir=sim_dir, bookmark_interval=60, tick=0.05
    ) as cluster:
        kc = KubeClient.load(cluster.kubeconfig)
        apps: Any = client.AppsV1Api(kc.api_client)
        on = {"nodeSelector": {"kubernetes.io/hostname": "k3s-cp-01"}}
        a = deployment("a", ["sleep", "60"])
        a["spec"]["template"]["spec"] |= on
        apps.create_namespaced_deployment("default", a)
        cache = PodCache(kc, "k3s-cp-01", watch_seconds=1)
        cache.start()
        try:
            wait_for(lambda: _named(cache, "a-"), what="the first pod in the cache")
            cluster.expire_history()
            with pytest.raises(Gone):  # the client itself: an expired version, in the stream
                list(kc.watch_pods("k3s-cp-01", "1", timeout=5))
            other = deployment("elsewhere", ["sleep", "60"])
            other["spec"]["template"]["spec"]["nodeSelector"] = {
                "kubernetes.io/hostname": "k3s-gpu-02"
            }
            apps.create_namespaced_deployment("default", other)  # versions move on, not ours
            time.sleep(0.3)
            cluster.expire_history()
            wait_for(lambda: cache.gone >= 1, what="the watch meeting 410")
            b = deployment("b", ["sleep", "60"])
            b["spec"]["template"]["spec"] |= on
            apps.create_namespaced_deployment("default", b)
            wait_for(lambda: _named(cache, "b-"), what="pods created after the re-list")
            assert cache.lists == 2  # one re-list per expiry, never a polling loop
            assert any(i.labels.get("app") == "b" for i in cache.infos().values())
        finally:
            cache.stop()
            kc.close()


def _named(cache: PodCache, prefix: str) -> bool:
    return any(p["metadata"]["name"].startswith(prefix) for p in cache.pods())


def test_errors_map_to_not_found_conflict_and_no_answer(kube: Kube, kc: KubeClient) -> None:
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "media"}}
    made = kc.create("v1", "namespaces", None, ns)
    assert made["metadata"]["name"] == "media"
    with pytest.raises(Conflict, match='namespaces "media" already exists') as exc:
        kc.create("v1", "namespaces", None, ns)
    assert exc.value.status == 409
    kc.create("apps/v1", "deployments", "media", deployment("tts", ["sleep", "60"]))
    assert kc.get_workload(Ref("Deployment", "media", "tts"))["spec"]["replicas"] == 1
    with pytest.raises(NotFound) as missing:
        kc.get_job("media", "nope")
    assert missing.value.status == 404
    broken = deployment("broken", ["sleep", "60"])
    del broken["spec"]["selector"]
    with pytest.raises(KubeError) as invalid:  # the Status body's message, not the reason
        kc.create("apps/v1", "deployments", "media", broken)
    assert invalid.value.status == 422
    assert "selector" in invalid.value.message
    assert kc.requests == 6
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    nobody = client.ApiClient(client.Configuration(host=f"http://127.0.0.1:{port}"))
    nobody.configuration.retries = 0
    away = KubeClient(nobody)
    with pytest.raises(KubeError, match="did not answer") as refused:
        away.get_node("k3s-cp-01")
    assert refused.value.status == 0
    assert type(refused.value) is KubeError
    with pytest.raises(KubeError, match="did not answer"):  # a watch opening too
        next(away.watch("pods", "1", node="k3s-cp-01", timeout=1))
    assert away.requests == 2
    away.close()


# --- the requests on the wire ---------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    """Answers every request with an object's metadata (a list's first page with a continue
    token) and keeps it as it arrived: request line, headers in order, body bytes."""

    seen: list[tuple[str, str, list[tuple[str, str]], bytes]]

    def _answer(self) -> None:
        size = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(size) if size else b""
        self.seen.append((self.command, self.path, list(self.headers.items()), body))
        first_page = "limit=" in self.path and "continue=" not in self.path
        meta = {"resourceVersion": "1", **({"continue": "a b/c"} if first_page else {})}
        data = json.dumps({"metadata": meta}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[client.ApiClient, list[Any]]]:
    seen: list[Any] = []
    handler = type("Recorder", (_Recorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings = client.Configuration(host=f"http://127.0.0.1:{server.server_address[1]}")
    settings.api_key["BearerToken"] = "secret"
    settings.api_key_prefix["BearerToken"] = "Bearer"
    api: Any = client.ApiClient(settings)
    yield api, seen
    api.close()
    server.shutdown()
    server.server_close()
    thread.join()


D = Ref("Deployment", "ns-a", "tts")
S = Ref("StatefulSet", "ns-a", "db")
PATCH = {"metadata": {"annotations": {"gpuherd.io/released": None, "x": "y z"}}}
LEASE = {
    "apiVersion": "coordination.k8s.io/v1",
    "kind": "Lease",
    "metadata": {"name": "l", "namespace": "ns-a", "resourceVersion": "7"},
    "spec": {"holderIdentity": "node-a", "leaseDurationSeconds": 60},
}
JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"name": "j", "labels": {"gpuherd.io/queue": "gpu"}},
    "spec": {"suspend": True, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
}
EVENT = {
    "apiVersion": "v1",
    "kind": "Event",
    "metadata": {"name": "tts.1", "namespace": "ns-a"},
    "involvedObject": {"kind": "Deployment", "name": "tts", "namespace": "ns-a"},
    "reason": "GpuherdReleased",
    "message": "released",
    "type": "Normal",
}
NAMED = {"metadata": {"name": "n"}}
CRON = {
    "metadata": {"name": "nightly"},
    "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": JOB["spec"]}},
}
SCALE = {
    "apiVersion": "autoscaling/v1",
    "kind": "Scale",
    "metadata": {"name": "tts", "namespace": "ns-a", "resourceVersion": "41"},
    "spec": {"replicas": 2},
}
Call = Callable[[KubeClient], Any]
Generated = Callable[[dict[str, Any]], list[Any]]


def _gen(api: str, method: str, *args: Any, pages: int = 1, **kwargs: Any) -> Generated:
    """The generated method's call, raw; `pages`: a list's first page, then the one after."""
    more: list[dict[str, Any]] = [{}, {"_continue": "a b/c"}][:pages]
    return lambda apis: [
        getattr(apis[api], method)(*args, _preload_content=False, **kwargs, **extra)
        for extra in more
    ]


M: dict[str, Any] = {"_content_type": MERGE}
# (name, gpuherd's call, the generated method it stands for, whether that method first made
# the body a model: the same JSON then, its keys in the model's order)
_SAME: list[tuple[str, Call, Generated, bool]] = [
    ("get_workload", lambda c: c.get_workload(D), _gen("apps", "read_namespaced_deployment", "tts", "ns-a"), False),
    ("get_workload sts", lambda c: c.get_workload(S), _gen("apps", "read_namespaced_stateful_set", "db", "ns-a"), False),
    ("patch_workload", lambda c: c.patch_workload(S, PATCH), _gen("apps", "patch_namespaced_stateful_set", "db", "ns-a", PATCH, **M), False),
    ("list_workloads", lambda c: c.list_workloads("Deployment"), _gen("apps", "list_deployment_for_all_namespaces"), False),
    ("list_workloads ns", lambda c: c.list_workloads("StatefulSet", "ns-a"), _gen("apps", "list_namespaced_stateful_set", "ns-a"), False),
    ("patch_scale", lambda c: c.patch_scale(D, 3), _gen("apps", "patch_namespaced_deployment_scale", "tts", "ns-a", {"spec": {"replicas": 3}}, **M), False),
    ("read_scale", lambda c: c.read_scale(D), _gen("apps", "read_namespaced_deployment_scale", "tts", "ns-a"), False),
    ("write_scale", lambda c: c.write_scale(D, 2, "41"), _gen("apps", "replace_namespaced_deployment_scale", "tts", "ns-a", SCALE), True),
    ("list_pods", lambda c: c.list_pods(node="n1", labels="app=x,b in (c)"), _gen("core", "list_pod_for_all_namespaces", field_selector="spec.nodeName=n1", label_selector="app=x,b in (c)"), False),
    ("list_pods ns", lambda c: c.list_pods(namespace="ns-a", labels="app=x"), _gen("core", "list_namespaced_pod", "ns-a", label_selector="app=x"), False),
    ("list_objects", lambda c: c.list_objects("jobs", labels="q"), _gen("batch", "list_job_for_all_namespaces", label_selector="q"), False),
    ("watch pods", lambda c: list(c.watch("pods", "12", node="n1", timeout=30)), _gen("core", "list_pod_for_all_namespaces", allow_watch_bookmarks=True, field_selector="spec.nodeName=n1", resource_version="12", timeout_seconds=30, watch=True), False),
    ("watch jobs", lambda c: list(c.watch("jobs", "5", labels="q", timeout=5)), _gen("batch", "list_job_for_all_namespaces", allow_watch_bookmarks=True, label_selector="q", resource_version="5", timeout_seconds=5, watch=True), False),
    ("watch sts", lambda c: list(c.watch("statefulsets", "5", timeout=5)), _gen("apps", "list_stateful_set_for_all_namespaces", allow_watch_bookmarks=True, resource_version="5", timeout_seconds=5, watch=True), False),
    ("get_pod", lambda c: c.get_pod("ns-a", "p 1"), _gen("core", "read_namespaced_pod", "p 1", "ns-a"), False),
    ("patch_pod", lambda c: c.patch_pod("ns-a", "p", PATCH), _gen("core", "patch_namespaced_pod", "p", "ns-a", PATCH, **M), False),
    ("pod_log", lambda c: c.pod_log("ns-a", "p"), _gen("core", "read_namespaced_pod_log", "p", "ns-a"), False),
    ("follow_pod_log", lambda c: list(c.follow_pod_log("ns-a", "p")), _gen("core", "read_namespaced_pod_log", "p", "ns-a", follow=True), False),
    ("list_jobs", lambda c: c.list_jobs(labels="a=b", namespace="ns-a"), _gen("batch", "list_namespaced_job", "ns-a", label_selector="a=b"), False),
    ("get_job", lambda c: c.get_job("ns-a", "j"), _gen("batch", "read_namespaced_job", "j", "ns-a"), False),
    ("patch_job", lambda c: c.patch_job("ns-a", "j", PATCH), _gen("batch", "patch_namespaced_job", "j", "ns-a", PATCH, **M), False),
    ("create_job", lambda c: c.create_job("ns-a", JOB), _gen("batch", "create_namespaced_job", "ns-a", JOB), True),
    ("delete_job", lambda c: c.delete_job("ns-a", "j"), _gen("batch", "delete_namespaced_job", "j", "ns-a", body={"propagationPolicy": "Background"}), True),
    ("get_lease", lambda c: c.get_lease("ns-a", "l"), _gen("coordination", "read_namespaced_lease", "l", "ns-a"), False),
    ("create_lease", lambda c: c.create_lease("ns-a", LEASE), _gen("coordination", "create_namespaced_lease", "ns-a", LEASE), True),
    ("replace_lease", lambda c: c.replace_lease("ns-a", "l", LEASE), _gen("coordination", "replace_namespaced_lease", "l", "ns-a", LEASE), True),
    ("delete_lease", lambda c: c.delete_lease("ns-a", "l"), _gen("coordination", "delete_namespaced_lease", "l", "ns-a"), False),
    ("get_pvc", lambda c: c.get_pvc("ns-a", "v"), _gen("core", "read_namespaced_persistent_volume_claim", "v", "ns-a"), False),
    ("get_pv", lambda c: c.get_pv("pv"), _gen("core", "read_persistent_volume", "pv"), False),
    ("list_hpas", lambda c: c.list_hpas("ns-a"), _gen("autoscaling", "list_namespaced_horizontal_pod_autoscaler", "ns-a"), False),
    ("list_scaled_objects", lambda c: c.list_scaled_objects("ns-a"), _gen("custom", "list_namespaced_custom_object", "keda.sh", "v1alpha1", "ns-a", "scaledobjects"), False),
    ("patch_scaled_object", lambda c: c.patch_scaled_object("ns-a", "so", PATCH), _gen("custom", "patch_namespaced_custom_object", "keda.sh", "v1alpha1", "ns-a", "scaledobjects", "so", PATCH, **M), False),
    ("get_node", lambda c: c.get_node("n1"), _gen("core", "read_node", "n1"), False),
    ("create_event", lambda c: c.create_event("ns-a", EVENT, timeout=2), _gen("core", "create_namespaced_event", "ns-a", EVENT, _request_timeout=2), True),
    ("create namespace", lambda c: c.create("v1", "namespaces", None, NAMED), _gen("core", "create_namespace", NAMED), True),
    ("create cronjob", lambda c: c.create("batch/v1", "cronjobs", "ns-a", CRON), _gen("batch", "create_namespaced_cron_job", "ns-a", CRON), True),
    ("list_all", lambda c: c.list_all("nodes"), _gen("core", "list_node", limit=500, pages=2), False),
    ("list_all cluster-scoped", lambda c: c.list_all("runtimeclasses", "ns-a"), _gen("node", "list_runtime_class", limit=500, pages=2), False),
    ("list_all ns", lambda c: c.list_all("daemonsets", "ns-a"), _gen("apps", "list_namespaced_daemon_set", "ns-a", limit=500, pages=2), False),
]  # fmt: skip


@pytest.mark.parametrize(("call", "generated", "modelled"), [s[1:] for s in _SAME], ids=[s[0] for s in _SAME])  # fmt: skip
def test_each_request_is_what_the_generated_method_sends(
    recorder: tuple[client.ApiClient, list[Any]], call: Call, generated: Generated, modelled: bool
) -> None:
    api, seen = recorder
    kc = KubeClient(api)
    call(kc)
    ours = list(seen)
    assert ours
    assert kc.requests == len(ours)
    seen.clear()
    apis = {
        "core": client.CoreV1Api(api),
        "apps": client.AppsV1Api(api),
        "batch": client.BatchV1Api(api),
        "coordination": client.CoordinationV1Api(api),
        "autoscaling": client.AutoscalingV2Api(api),
        "custom": client.CustomObjectsApi(api),
        "node": client.NodeV1Api(api),
    }
    for resp in generated(apis):
        resp.release_conn()
    theirs = list(seen)
    assert [r[:3] for r in ours] == [r[:3] for r in theirs]  # request line and headers, in order
    if modelled:  # the model's round trip reorders the keys
        assert [json.loads(r[3] or b"null") for r in ours] == [
            json.loads(r[3] or b"null") for r in theirs
        ]
    else:
        assert [r[3] for r in ours] == [r[3] for r in theirs]


# --- what the broker's calls import -------------------------------------------------------

_BROKER_LIKE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from gpuherd.k8s import leases
    from gpuherd.k8s.client import KubeClient, Ref
    from gpuherd.k8s.events import event, reference

    kc = KubeClient.load(Path(sys.argv[1]))
    ref = Ref("Deployment", "default", "tts")
    pods = kc.list_pods(node="k3s-cp-01")
    events = list(kc.watch("pods", pods["metadata"]["resourceVersion"], node="k3s-cp-01", timeout=1))
    kc.list_objects("jobs", labels="gpuherd.io/queue")
    pod = kc.list_pods(namespace="default", labels="app=tts")["items"][0]["metadata"]["name"]
    kc.get_pod("default", pod), kc.pod_log("default", pod)  # before the scale replaces it
    workload = kc.get_workload(ref)
    kc.list_hpas("default"), kc.list_scaled_objects("default"), kc.get_node("k3s-cp-01")
    assert leases.acquire(kc, "default", "gpuherd-tts", "k3s-cp-01")
    kc.patch_workload(ref, {"metadata": {"annotations": {"example.com/released": "1"}}})
    assert kc.scale(ref, 0) == 1 and kc.scale(ref, 1) == 0
    involved = reference("apps/v1", "Deployment", "default", "tts", workload["metadata"]["uid"])
    kc.create_event("default", event(involved, "GpuherdReleased", "m", kind="Normal",
                                     node="k3s-cp-01", at=1.0e9), timeout=5)
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "render"},
           "spec": {"suspend": True, "template": {"spec": {"restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "i", "command": ["true"]}]}}}}
    kc.create_job("default", job)
    kc.patch_job("default", "render", {"metadata": {"annotations": {"a": "b"}}})
    kc.get_job("default", "render"), kc.list_jobs(labels="x", namespace="default")
    kc.delete_job("default", "render")
    leases.release(kc, "default", "gpuherd-tts")
    kc.list_all("deployments"), kc.list_all("nodes")
    loaded = sorted(m for m in sys.modules if m.startswith(("kubernetes.client.models.",
                                                            "kubernetes.client.api.")))
    print(json.dumps({"loaded": loaded, "requests": kc.requests, "events": len(events)}))
    kc.close()
    """
)


def test_the_broker_s_calls_import_no_generated_model_or_api(kube: Kube) -> None:
    """The generated APIs import some 360 pydantic models (about 30 MB resident) the broker
    never needs: a broker-like run of every kind of call, in a fresh interpreter, loads none."""
    kube.apps.create_namespaced_deployment("default", deployment("tts", ["sleep", "60"]))
    kube.running("app=tts", 1)
    done = subprocess.run(
        [sys.executable, "-c", _BROKER_LIKE, str(kube.cluster.kubeconfig)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["loaded"] == []
    assert found["requests"] >= 25
