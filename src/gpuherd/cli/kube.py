"""`gpuherd serve --kubernetes`: open the cluster session, this node's caches, its event
recorder and the config the broker runs with (GPUs from the backend, tenants and jobs from the
cluster, a config file optional), and the launcher for Kubernetes Jobs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gpuherd.cli.common import Exit, fail, load_config_or_exit

if TYPE_CHECKING:
    from gpuherd.broker.daemon import Daemon
    from gpuherd.broker.journal import Journal
    from gpuherd.broker.kubemode import KubeMode
    from gpuherd.broker.launcher import Launcher
    from gpuherd.gpu.base import GpuBackend
    from gpuherd.k8s.pods import Cache
    from gpuherd.k8s.session import Session
    from gpuherd.spec.model import Config


@dataclass
class Opened:
    config: Config
    launcher: Launcher
    session: Session
    jobs: Cache
    mode: KubeMode | None = None

    def start(self, daemon: Daemon, journal: Journal) -> None:
        """Once the engine exists and before its first step."""
        from gpuherd.broker.accounting import device_for
        from gpuherd.broker.kubemode import GpuLeaseClaim, KubeMode

        keeper = daemon.engine.keeper
        if self.session.gpu_leases is not None:
            snap = daemon.engine.backend.snapshot()
            uuids = {
                g.name: dev.uuid
                for g in self.config.gpus or []
                if (dev := device_for(g, snap)) is not None
            }
            keeper.claim = GpuLeaseClaim(self.session.gpu_leases, uuids)
        self.mode = KubeMode(
            self.session,
            self.jobs,
            self.config,
            journal,
            wake=daemon.wake,
            settle=keeper.settle_claim,
        )
        self.session.pods.on_change = self.mode.pods_changed
        for cache in self.session.workloads.values():
            cache.on_change = self.mode.pods_changed  # tenants are read again
        self.jobs.on_change = self.mode.jobs_changed
        if self.session.leases is not None:
            self.session.leases.on_change = self.mode.jobs_changed  # a Job's lease let go
        self.mode.start()

    def close(self) -> None:
        from gpuherd.gpu.attribution import use_defaults
        from gpuherd.gpu.procinfo import ROOT
        from gpuherd.k8s import session

        if self.mode is not None:
            self.mode.stop()
        for cache in (self.session.pods, self.jobs, *self.session.workloads.values()):
            cache.stop()
        for extra in (self.session.leases, self.session.nodes):
            if extra is not None:
                extra.stop()
        if self.session.events is not None:
            self.session.events.stop()  # what the last restores reported, for a moment at most
        session.use(None)
        use_defaults(root=ROOT, pods=None)


def _gpus(backend: GpuBackend, indices: list[int] | None) -> list[dict[str, object]]:
    devices = backend.snapshot().devices
    chosen = [d for d in devices if indices is None or d.index in indices]
    return [
        {"name": f"gpu{d.index}", "index": d.index, "uuid": d.uuid, "memory": d.memory_total}
        for d in chosen
    ]


def open_mode(
    *,
    config_path: Path | None,
    kubeconfig: Path | None,
    node: str | None,
    proc_root: Path | None,
    gpu_indices: list[int] | None,
    backend: GpuBackend,
) -> Opened:
    try:
        from gpuherd.k8s.client import ConfigError, KubeClient, KubeError
    except ImportError:
        fail(
            "the Kubernetes mode needs the kubernetes client",
            hint="pip install 'gpuherd[kubernetes]'",
            code=Exit.USAGE,
        )
    from gpuherd.actuators.factory import unavailable_kinds
    from gpuherd.broker.launchers import LAUNCHERS
    from gpuherd.gpu.attribution import use_defaults
    from gpuherd.gpu.procinfo import ROOT
    from gpuherd.k8s import session
    from gpuherd.k8s.annotations import QUEUE_LABEL
    from gpuherd.k8s.events import Recorder
    from gpuherd.k8s.gpulease import GpuLeases
    from gpuherd.k8s.leases import MANAGED_BY
    from gpuherd.k8s.pods import Cache, PodCache
    from gpuherd.spec.model import Config

    if not node:
        fail("--kubernetes needs this node's name", hint="pass --node NAME or set NODE_NAME")
    methods = unavailable_kinds(modes=frozenset({"kubernetes"}))
    if config_path is not None:
        cfg = load_config_or_exit(config_path, methods=methods)
    else:
        cfg = Config.model_validate({"version": 1})
    if cfg.gpus is None:
        cfg = cfg.model_copy(
            update={
                "gpus": Config.model_validate(
                    {"version": 1, "gpus": _gpus(backend, gpu_indices)}
                ).gpus
            }
        )
    if cfg.gpus:  # a Job template naming no GPU runs on the node's first, as a queued Job does
        first = cfg.gpus[0].name
        jobs_here = {
            name: job.model_copy(update={"gpu": first})
            if job.kubernetes is not None and job.gpu is None
            else job
            for name, job in cfg.jobs.items()
        }
        cfg = cfg.model_copy(update={"jobs": jobs_here})
    try:
        client = KubeClient.load(kubeconfig)
        client.get_node(node)
    except ConfigError as exc:
        fail(str(exc), code=Exit.USAGE)
    except KubeError as exc:
        fail(
            f"node {node}: {exc.message}", hint="--node must name this node as the cluster knows it"
        )
    # How long one watch request lasts before it is reopened from its version (tests shorten it).
    seconds = int(os.environ.get("GPUHERD_WATCH_SECONDS", "300"))
    pods = PodCache(client, node, watch_seconds=seconds)
    jobs = Cache(client, "jobs", labels=QUEUE_LABEL, watch_seconds=seconds)
    workloads = {
        kind: Cache(client, resource, watch_seconds=seconds)
        for kind, resource in (("Deployment", "deployments"), ("StatefulSet", "statefulsets"))
    }
    leases = Cache(client, "leases", labels=MANAGED_BY, watch_seconds=seconds)
    nodes = Cache(client, "nodes", watch_seconds=seconds)
    # The GPU leases live in the broker's own namespace (the downward API's POD_NAMESPACE).
    namespace = os.environ.get("POD_NAMESPACE") or "default"
    recorder = Recorder(client, node)
    s = session.Session(
        client,
        node,
        pods,
        proc_root or ROOT,
        jobs=jobs,
        workloads=workloads,
        events=recorder,
        leases=leases,
        nodes=nodes,
        gpu_leases=GpuLeases(client, node, namespace, leases),
    )
    session.use(s)
    recorder.start()
    use_defaults(root=s.proc_root, pods=pods.infos)
    for cache in (pods, jobs, leases, nodes, *workloads.values()):
        cache.start()
    launcher = LAUNCHERS["kubernetes"](None)
    return Opened(config=cfg, launcher=launcher, session=s, jobs=jobs)
