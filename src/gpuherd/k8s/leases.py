"""Leases (coordination.k8s.io/v1) that decide which broker acts: one per queued Job that may
land on several nodes, so two brokers never admit the same Job, and one per GPU while tenants
on it are released (`gpuherd.k8s.gpulease`).

Taking one is a create (409 when it exists); an existing one is taken over only when it is ours
already (a restarted broker on the same node) or expired, by a PUT carrying the resourceVersion
read, so of two brokers racing for an expired lease exactly one wins.
"""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime
from typing import Any

from gpuherd.k8s.client import Conflict, KubeClient, NotFound

Obj = dict[str, Any]
# The label selector of gpuherd's leases: each broker watches them (kubemode.admit).
_MANAGED_BY = {"app.kubernetes.io/managed-by": "gpuherd"}
MANAGED_BY = ",".join(f"{k}={v}" for k, v in _MANAGED_BY.items())
JOB_SECONDS = 60  # a queued Job's lease, renewed a third of the way by its holder


def _micro(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str | None) -> float:
    if not text:
        return 0.0
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def lease_name(*parts: str) -> str:
    """A valid object name from parts (a Job's uid, a node and a GPU uuid)."""
    name = "gpuherd-" + "-".join(parts).lower()
    cleaned = "".join(c if c.isalnum() or c in "-." else "-" for c in name)
    return cleaned[:253].strip("-.")


def holder(lease: Obj) -> tuple[str | None, float]:
    """(who holds it, when it expires)."""
    spec = lease.get("spec") or {}
    renewed = _parse(spec.get("renewTime") or spec.get("acquireTime"))
    return spec.get("holderIdentity"), renewed + float(spec.get("leaseDurationSeconds") or 0)


def held_by_other(lease: Obj, me: str, now: float) -> bool:
    """Someone else holds it and it has not lapsed."""
    who, until = holder(lease)
    return who not in (None, me) and until > now


def acquire(
    client: KubeClient,
    namespace: str,
    name: str,
    me: str,
    *,
    seconds: int = 60,
    create_only: bool = False,
    seen: Obj | None = None,
    labels: dict[str, str] | None = None,
) -> Obj | None:
    """Take or renew it for `seconds`: the lease as written, None while someone else holds it.
    `create_only`: the caller's lease watch shows no such lease, so a 409 means another broker
    just took it and is not worth a read to confirm. `seen`: the lease as the caller last saw
    it (its own last write, or its watch), so a renewal is one PUT at that version (a stale one
    costs the read it saved)."""
    now = time.time()
    spec = {
        "holderIdentity": me,
        "leaseDurationSeconds": seconds,
        "acquireTime": _micro(now),
        "renewTime": _micro(now),
    }
    body: Obj = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {**(labels or {}), **_MANAGED_BY},  # brokers watch these (MANAGED_BY)
        },
        "spec": spec,
    }
    if seen is not None:
        if held_by_other(seen, me, now):
            return None
        written = _replace(client, body, seen, me)
        if written is not None:
            return written
        body["metadata"].pop("resourceVersion", None)  # stale: read it, as without a watch
    try:
        return client.create_lease(namespace, body)
    except Conflict:
        if create_only:
            return None
    try:
        current = client.get_lease(namespace, name)
    except NotFound:
        return None  # released between our create and read: the next pass tries again
    return None if held_by_other(current, me, now) else _replace(client, body, current, me)


def _replace(client: KubeClient, body: Obj, current: Obj, me: str) -> Obj | None:
    """PUT `body` over `current` (not held by another: the caller checked); None when
    `current` was not the latest (another broker wrote first, or it was deleted)."""
    spec, meta = body["spec"], body["metadata"]
    if holder(current)[0] == me:
        spec["acquireTime"] = (current.get("spec") or {}).get("acquireTime") or spec["acquireTime"]
    meta["resourceVersion"] = current["metadata"]["resourceVersion"]
    try:
        return client.replace_lease(meta["namespace"], meta["name"], body)
    except (Conflict, NotFound):
        return None


def holds(client: KubeClient, namespace: str, name: str, me: str) -> bool:
    """Whether it is still ours: expired but untaken counts, nobody else acted on it."""
    try:
        return holder(client.get_lease(namespace, name))[0] == me
    except NotFound:
        return False


def release(client: KubeClient, namespace: str, name: str) -> None:
    """Drop a lease of ours whose work is done (its Job no longer waits for anyone)."""
    with contextlib.suppress(NotFound):
        client.delete_lease(namespace, name)
