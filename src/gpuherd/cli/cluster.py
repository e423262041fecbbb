"""Reading a live cluster for `lint --cluster` and `plan --from-cluster`: the client (an
optional extra), its failures as exit codes, and what was skipped, said on stderr."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from gpuherd.cli.common import Exit, fail, stderr

if TYPE_CHECKING:
    from gpuherd.k8s.live import Snapshot


def read_or_exit(
    flag: str,
    *,
    kubeconfig: Path | None,
    context: str | None,
    namespace: str | None = None,
    facts: tuple[str, ...] | None = None,
) -> Snapshot:
    """The cluster's workloads and `facts` (resources of gpuherd.k8s.live.FACTS, default all);
    exit 2 without the client or with a bad kubeconfig, exit 4 when the API server cannot be
    reached or read. Never a traceback."""
    try:
        from gpuherd.k8s.client import ConfigError, KubeClient
        from gpuherd.k8s.live import FACTS, ClusterUnreadable, describe, read_cluster
    except ImportError as exc:
        if not (exc.name or "").startswith(("kubernetes", "urllib3")):
            raise
        fail(
            f"{flag} needs the Kubernetes client, which is not installed: "
            "pip install 'gpuherd[kubernetes]'"
        )
    try:
        client = KubeClient.load(kubeconfig, context=context)
    except ConfigError as exc:
        fail(str(exc))
    try:
        snapshot = read_cluster(
            client, namespace=namespace, facts=tuple(FACTS) if facts is None else facts
        )
    except ClusterUnreadable as exc:
        fail(f"cannot read the cluster: {exc}", code=Exit.NO_CLUSTER)
    finally:
        client.close()
    forbidden = [s for s in snapshot.skipped if s.reason == "forbidden"]
    if forbidden:
        stderr.print(f"skipped (403 forbidden): {describe(forbidden)}", markup=False)
    absent = [s.resource for s in snapshot.skipped if s.reason == "not served"]
    if absent:
        stderr.print(f"not served by this API server: {', '.join(absent)}", markup=False)
    return snapshot
