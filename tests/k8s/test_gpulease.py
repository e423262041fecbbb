"""The Lease per GPU (node + GPU UUID) held while tenants on it are released: taken, renewed
with the version the lease watch saw, let go, taken over by a restarted broker on the node,
and read by the other nodes' brokers to know whether a release is still looked after."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from gpuherd.k8s import gpulease, leases
from gpuherd.k8s.client import KubeClient
from gpuherd.k8s.gpulease import GpuLeases
from gpuherd.k8s.pods import Cache
from tests.simcluster.conftest import Kube, wait_for

NODE, OTHER = "k3s-cp-01", "k3s-gpu-02"
UUID = "GPU-8f2a61c4-0b3e-4d5f-9a6e-1c2d3e4f5a6b"


@pytest.fixture
def watched(kc: KubeClient) -> Iterator[Cache]:
    """gpuherd's leases as a broker's watch sees them."""
    cache = Cache(kc, "leases", labels=leases.MANAGED_BY, watch_seconds=5)
    cache.start()
    assert cache.synced.wait(10)
    yield cache
    cache.stop()


def _seen(watched: Cache, name: str, rv: str | None = None) -> None:
    """Wait until the watch shows the lease (at a version other than `rv`)."""
    wait_for(
        lambda: (
            (o := watched.get("default", name)) is not None
            and o["metadata"]["resourceVersion"] != rv
        ),
        what=f"lease {name} in the watch",
    )


def test_it_is_taken_once_kept_without_requests_and_let_go_after_the_last_restore(
    kube: Kube, kc: KubeClient, watched: Cache
) -> None:
    mine = GpuLeases(kc, NODE, "default", watched)
    before = kc.requests
    assert mine.hold(UUID)
    assert kc.requests - before == 1  # one create
    lease = kube.coordination.read_namespaced_lease(gpulease.name(NODE, UUID), "default")
    assert lease.metadata.name == f"gpuherd-gpu-{NODE}-{UUID.lower()}"
    assert lease.spec.holder_identity == NODE
    assert lease.spec.lease_duration_seconds == gpulease.SECONDS
    assert lease.metadata.labels == {
        "app.kubernetes.io/managed-by": "gpuherd",
        "gpuherd.io/node": NODE,
        "gpuherd.io/gpu": UUID,
    }
    before = kc.requests
    assert mine.hold(UUID)  # a second tenant on the GPU: held already
    mine.keep({UUID})  # the next pass: not yet due for renewal
    assert kc.requests == before
    assert mine.held() == {UUID}
    mine.keep(set())  # the last tenant back
    assert mine.held() == set()
    assert not kube.coordination.list_namespaced_lease("default").items


def test_a_renewal_is_one_put_with_the_version_the_watch_saw(
    kube: Kube, kc: KubeClient, watched: Cache
) -> None:
    mine = GpuLeases(kc, NODE, "default", watched, renew_after=0.0)
    assert mine.hold(UUID)
    name = gpulease.name(NODE, UUID)
    _seen(watched, name)
    first = kube.coordination.read_namespaced_lease(name, "default")
    time.sleep(0.01)
    before = kc.requests
    mine.keep({UUID})
    assert kc.requests - before == 1  # the PUT alone: no create, no read
    renewed = kube.coordination.read_namespaced_lease(name, "default")
    assert renewed.spec.renew_time > first.spec.renew_time
    assert renewed.spec.acquire_time == first.spec.acquire_time  # the same holder's tenure


def test_a_restarted_broker_on_the_node_takes_over_its_lease_or_lets_a_stale_one_go(
    kube: Kube, kc: KubeClient, watched: Cache
) -> None:
    crashed = GpuLeases(kc, NODE, "default", watched)
    assert crashed.hold(UUID)
    assert crashed.hold("GPU-2")
    _seen(watched, gpulease.name(NODE, "GPU-2"))
    restarted = GpuLeases(kc, NODE, "default", watched)  # same node, nothing in memory
    restarted.keep({UUID})  # its journal: tenants still released on one GPU
    assert restarted.held() == {UUID}
    lease = kube.coordination.read_namespaced_lease(gpulease.name(NODE, UUID), "default")
    assert lease.spec.holder_identity == NODE
    names = [x.metadata.name for x in kube.coordination.list_namespaced_lease("default").items]
    assert names == [gpulease.name(NODE, UUID)]  # the other GPU's, left by the crash, is gone


def test_a_lease_someone_else_holds_is_not_taken(kc: KubeClient) -> None:
    name = gpulease.name(NODE, UUID)
    assert leases.acquire(kc, "default", name, "an-old-broker", seconds=600)
    assert not GpuLeases(kc, NODE, "default").hold(UUID)


def test_other_nodes_see_whether_a_release_is_still_looked_after(
    kc: KubeClient, watched: Cache
) -> None:
    now = time.time()
    assert not gpulease.live(kc, watched, OTHER, now)
    other = GpuLeases(kc, OTHER, "default", watched)
    assert other.hold(UUID)
    _seen(watched, gpulease.name(OTHER, UUID))
    assert gpulease.live(kc, watched, OTHER, time.time())
    assert gpulease.live(kc, None, OTHER, time.time())  # without a watch: one LIST
    assert not gpulease.live(kc, watched, NODE, time.time())
    old = time.time() - 2 * gpulease.SECONDS
    assert not gpulease.lapsed(kc, watched, OTHER, old, time.time())  # its broker renews it
    assert not gpulease.live(kc, watched, OTHER, time.time() + gpulease.SECONDS + 1)  # unrenewed
    other.keep(set())
    wait_for(lambda: not watched.items(), what="the lease gone from the watch")
    assert gpulease.lapsed(kc, watched, OTHER, old, time.time())
    assert not gpulease.lapsed(kc, watched, OTHER, time.time() - 5, time.time())  # too recent


def test_a_lease_let_go_is_neither_deleted_again_nor_renewed_from_a_lagging_watch(
    kube: Kube, kc: KubeClient, watched: Cache
) -> None:
    mine = GpuLeases(kc, NODE, "default", watched)
    assert mine.hold(UUID)
    _seen(watched, gpulease.name(NODE, UUID))
    before = kc.requests
    mine.keep(set())  # deleted; the watch still shows it for a moment
    mine.keep(set())  # the next pass: nothing to send
    assert kc.requests - before == 1
    before = kc.requests
    assert mine.hold(UUID)  # the next job, at once: a create, not a PUT over the deleted one
    assert kc.requests - before == 1
    wait_for(lambda: not _lagging(watched), what="the watch caught up")
    assert [x.metadata.name for x in kube.coordination.list_namespaced_lease("default").items] == [
        gpulease.name(NODE, UUID)
    ]


def _lagging(watched: Cache) -> bool:
    lease = watched.get("default", gpulease.name(NODE, UUID))
    return lease is None
