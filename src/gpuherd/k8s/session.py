"""The Kubernetes mode's process-wide session: the API client, this node's name, its pod
cache and its event recorder. `gpuherd serve --kubernetes` opens it once; the `kubernetes`
release method, built by the actuator registry from a method's settings alone, finds the
cluster here."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpuherd.gpu.procinfo import ROOT
from gpuherd.k8s.client import KubeClient
from gpuherd.k8s.events import Recorder
from gpuherd.k8s.gpulease import GpuLeases
from gpuherd.k8s.pods import Cache, PodCache

ANNOTATION = "gpuherd.io/"
RESTORE_REPLICAS = "gpuherd.io/restore-replicas"
RELEASED_BY = "gpuherd.io/released-by"
RELEASED_AT = "gpuherd.io/released-at"


@dataclass
class Session:
    client: KubeClient
    node: str
    pods: PodCache
    proc_root: Path = ROOT  # where /proc is read for attribution (a simulated kubelet's tree)
    jobs: Cache | None = None  # the Jobs labelled gpuherd.io/queue
    workloads: dict[str, Cache] = field(default_factory=dict)  # kind -> every one, watched
    events: Recorder | None = None  # Kubernetes Events on what the broker acts on
    leases: Cache | None = None  # gpuherd's Leases: a Job another broker holds is not asked for
    nodes: Cache | None = None  # the cluster's nodes: which others a queued Job could land on
    gpu_leases: GpuLeases | None = None  # this node's GPUs' leases while tenants are released
    # Lease name -> when this broker took or last renewed a queued Job's lease (monotonic): one
    # taken lately is ours without asking (another broker takes it only once it has lapsed).
    job_leases: dict[str, float] = field(default_factory=dict)

    def workload(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A Deployment or StatefulSet as the watch last saw it (None: not watched or gone)."""
        cache = self.workloads.get(kind)
        return None if cache is None else cache.get(namespace, name)


_current: list[Session] = []


def use(session: Session | None) -> None:
    _current.clear()
    if session is not None:
        _current.append(session)


def current() -> Session | None:
    return _current[0] if _current else None
