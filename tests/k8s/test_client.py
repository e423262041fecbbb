"""gpuherd's API client against the simulated API server: scale with a version precondition
(409 retried), and the node's pod cache surviving an expired history (410)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from gpuherd.k8s.client import Conflict, Gone, KubeClient, NotFound, Ref
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
    _, version = kc.read_scale(REF)
    kube.apps.patch_namespaced_deployment("tts", "default", {"metadata": {"labels": {"x": "y"}}})
    with pytest.raises(Conflict):
        kc.write_scale(REF, 0, version)
    racing = _Interfering(kc.api_client, kube)
    assert racing.scale(REF, 3) == 1
    assert racing.conflicts == 2
    assert kube.apps.read_namespaced_deployment_scale("tts", "default").spec.replicas == 3


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
        apps: Any = kc.apps
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
