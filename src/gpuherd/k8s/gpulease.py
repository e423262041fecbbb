"""One Lease per GPU of this node (node + GPU UUID) while tenants on it are released.

Taken before the first tenant on the GPU is released, renewed while any stays released, let go
(deleted) once the last is back. Its holder is the node's name, so a broker restarted on the
node (a crash, a new DaemonSet pod) takes it over at once and renews it; the state dir's lock
already keeps a second broker off the node.

What it tells the other nodes' brokers: a workload annotated `released-by` a node whose GPU
lease is live belongs to that node's broker until it restores it; when the node's broker has
stopped renewing (its lease lapsed or is gone) and the release is older than a lease's life,
another broker may take the workload over (`lapsed`). So two brokers never act on one
workload at once, and a node that died with a workload released does not hold it forever.

Renewing costs one PUT with the version the lease watch last saw; a broker with nothing
released holds no lease and sends nothing.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable
from typing import Any

from gpuherd.k8s import leases
from gpuherd.k8s.client import KubeClient, KubeError
from gpuherd.k8s.pods import Cache

Obj = dict[str, Any]
NODE_LABEL = "gpuherd.io/node"
GPU_LABEL = "gpuherd.io/gpu"
# A lease's life without renewal: how long a dead broker's releases stay its own before another
# node's broker may take them over. Minutes are fine for that, and each renewal is a request.
SECONDS = 120
RENEW_AFTER = 40.0  # renewed once this old, so two renewals may fail before it lapses


def name(node: str, uuid: str) -> str:
    return leases.lease_name("gpu", node, uuid)


def _label(value: str) -> str:
    """A label value (at most 63 characters, alphanumeric at both ends)."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "-" for c in value)
    return cleaned[:63].strip("-_.")


class GpuLeases:
    def __init__(
        self,
        client: KubeClient,
        node: str,
        namespace: str,
        watched: Cache | None = None,
        *,
        seconds: int = SECONDS,
        renew_after: float = RENEW_AFTER,
    ) -> None:
        self.client, self.node, self.namespace = client, node, namespace
        self.watched, self.seconds, self.renew_after = watched, seconds, renew_after
        self._taken: dict[str, float] = {}  # uuid -> when taken or last renewed (monotonic)
        # uuid -> the lease as this broker last wrote it: the version its renewal PUTs over,
        # newer than a watch that lags behind our own writes.
        self._mine: dict[str, Obj] = {}
        # Names deleted here that the watch may still show: neither deleted again nor renewed.
        self._deleted: set[str] = set()
        self._lock = threading.Lock()

    def held(self) -> set[str]:
        with self._lock:
            return set(self._taken)

    def hold(self, uuid: str) -> bool:
        """Before a tenant on the GPU is released: take the lease, or keep it (no request when
        it was taken or renewed lately). False: another holder has it."""
        with self._lock:
            return self._hold(uuid, time.monotonic())

    def keep(self, released: Iterable[str]) -> None:
        """The GPUs with tenants released now (from the journal): take or renew their leases
        when due, let go of the others', a lease left by this node's previous broker too."""
        wanted, now = set(released), time.monotonic()
        with self._lock:
            for uuid in wanted:
                self._hold(uuid, now)
            for uuid in set(self._taken) - wanted:
                del self._taken[uuid]
                self._mine.pop(uuid, None)
                self._delete(name(self.node, uuid))
            keep = {name(self.node, u) for u in wanted}
            shown = {seen["metadata"]["name"] for seen in self._ours_seen()}
            self._deleted &= shown  # gone from the watch too: nothing left to remember
            for lease_name in shown - keep - self._deleted:  # left by this node's last broker
                self._delete(lease_name)

    def _hold(self, uuid: str, now: float) -> bool:
        taken = self._taken.get(uuid)
        if taken is not None and now - taken < self.renew_after:
            return True
        lease = name(self.node, uuid)
        seen = self._mine.get(uuid)
        if seen is None and self.watched is not None and lease not in self._deleted:
            seen = self.watched.get(self.namespace, lease)  # a previous broker's, at start
        self._deleted.discard(lease)
        written = leases.acquire(
            self.client,
            self.namespace,
            lease,
            self.node,
            seconds=self.seconds,
            seen=seen,
            labels={NODE_LABEL: _label(self.node), GPU_LABEL: _label(uuid)},
        )
        if written is None:
            return False
        self._taken[uuid], self._mine[uuid] = now, written
        return True

    def _delete(self, lease: str) -> None:
        with contextlib.suppress(KubeError):  # gone already, or the next pass tries again
            leases.release(self.client, self.namespace, lease)
            self._deleted.add(lease)

    def _ours_seen(self) -> list[Obj]:
        return [
            lease
            for lease in _of_node(self.watched, self.node)
            if lease["metadata"].get("namespace") == self.namespace
        ]


def _of_node(watched: Cache | None, node: str) -> list[Obj]:
    """The GPU leases of `node`'s broker as the lease watch shows them."""
    if watched is None:
        return []
    return [
        lease
        for lease in watched.items()
        if (lease["metadata"].get("labels") or {}).get(NODE_LABEL) == _label(node)
    ]


def live(client: KubeClient, watched: Cache | None, node: str, now: float) -> bool:
    """Whether `node`'s broker holds a GPU lease that has not lapsed (from the lease watch;
    without one, a LIST of that node's leases)."""
    selector = f"{leases.MANAGED_BY},{NODE_LABEL}={_label(node)}"
    if watched is not None:
        found = _of_node(watched, node)
    else:
        found = list(client.list_objects("leases", labels=selector).get("items") or [])
    return any(leases.holder(lease)[0] == node and leases.holder(lease)[1] > now for lease in found)


def lapsed(
    client: KubeClient, watched: Cache | None, node: str, released_at: float, now: float
) -> bool:
    """A workload released by `node` may be taken over: its broker holds no live GPU lease and
    the release is older than a lease's life (a lease that had not yet reached the watch)."""
    return now - released_at > SECONDS and not live(client, watched, node, now)
