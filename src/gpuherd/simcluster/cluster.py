"""The simulated cluster as one object: store, API server, controllers, scheduler and one
kubelet per node; started and stopped in-process (tests) or by `gpuherd sim cluster up`."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from gpuherd.gpu.base import GpuDevice
from gpuherd.simcluster.api import Api
from gpuherd.simcluster.http import ApiServer
from gpuherd.simcluster.nodes import NodeSpec, node_object
from gpuherd.simcluster.resources import BY_KIND
from gpuherd.simcluster.store import Store

if TYPE_CHECKING:
    from gpuherd.simcluster.containers import Container
    from gpuherd.simcluster.kubelet import Kubelet

__all__ = ["ClusterError", "NodeSpec", "SimCluster"]
NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class ClusterError(Exception):
    """A cluster that cannot start as asked (bad node list, missing simulated GPUs)."""


def _devices(sim_dir: Path | None, nodes: Sequence[NodeSpec]) -> dict[int, GpuDevice]:
    wanted = sorted({i for n in nodes for i in n.gpus})
    if not wanted:
        return {}
    if sim_dir is None:
        raise ClusterError(
            "nodes name GPUs but no simulated GPUs were given (--sim-dir or GPUHERD_SIM_DIR)"
        )
    from gpuherd.gpu.base import BackendUnavailable
    from gpuherd.gpu.sim import SimHost

    try:
        host = SimHost(sim_dir)
    except BackendUnavailable as exc:
        raise ClusterError(f"{exc.message}; {exc.hint}") from exc
    try:
        devices = {d.index: d for d in host.snapshot().devices}
    finally:
        host.close()
    for node in nodes:
        missing = [i for i in node.gpus if i not in devices]
        if missing:
            raise ClusterError(
                f"node {node.name}: no simulated GPU {missing[0]} in {sim_dir} "
                f"(it has {len(devices)}: 0..{len(devices) - 1})"
            )
    owners: dict[int, str] = {}
    for node in nodes:
        for i in node.gpus:
            if i in owners:
                raise ClusterError(f"GPU {i} is given to both {owners[i]} and {node.name}")
            owners[i] = node.name
    return devices


class SimCluster:
    """`with SimCluster(...) as c:` serves on 127.0.0.1 and writes `c.kubeconfig`."""

    def __init__(
        self,
        *,
        directory: Path,
        nodes: Sequence[NodeSpec],
        sim_dir: Path | None = None,
        port: int = 0,
        history: int = 10_000,
        bookmark_interval: float = 10.0,
        validate: bool = True,
        tick: float = 0.1,
    ) -> None:
        names = [n.name for n in nodes]
        if not nodes:
            raise ClusterError("a cluster needs at least one --node")
        if len(set(names)) != len(names):
            raise ClusterError(f"node names repeat: {', '.join(names)}")
        self.directory = Path(directory)
        self.nodes = tuple(nodes)
        self.sim_dir = sim_dir
        self.devices = _devices(sim_dir, nodes)
        self.store = Store(history=history)
        self.api = Api(self.store, validate=validate)
        self.tick = tick
        self._port = port
        self._bookmark_interval = bookmark_interval
        self._server: ApiServer | None = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self.kubelets: dict[str, Kubelet] = {}

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return self._server.url

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    def start(self) -> None:
        from gpuherd.simcluster.controllers import Controllers
        from gpuherd.simcluster.kubelet import Kubelet

        self.directory.mkdir(parents=True, exist_ok=True)
        for name in NAMESPACES:
            self.api.create(BY_KIND["Namespace"], "", {"metadata": {"name": name}})
        self._server = ApiServer(self.api, self._port, bookmark_interval=self._bookmark_interval)
        for index, spec in enumerate(self.nodes):
            devices = [self.devices[i] for i in spec.gpus]
            self.store.create(BY_KIND["Node"], node_object(spec, index, devices))
            self.kubelets[spec.name] = Kubelet(
                store=self.store,
                node=spec,
                index=index,
                directory=self.directory,
                sim_dir=self.sim_dir,
                tick=self.tick,
                api_url=self._server.url,
                uuids={i: str(self.devices[i].uuid) for i in spec.gpus},
            )
        self.api.log_source = self._log_source
        controllers = Controllers(self.store, tick=self.tick)
        self._spawn("api-server", self._server.serve_forever)
        self._spawn("controllers", lambda: controllers.run(self._stop))
        from gpuherd.simcluster.kubelet import attach_loop, run_kubelets

        kubelets = list(self.kubelets.values())
        self._spawn("attribution", lambda: attach_loop(kubelets, self._stop))
        self._spawn("kubelets", lambda: run_kubelets(kubelets, self.store, self._stop, self.tick))
        self._write_kubeconfig()

    def _spawn(self, name: str, target: object) -> None:
        thread = threading.Thread(target=target, name=f"simcluster-{name}", daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def _log_source(self, namespace: str, name: str, container: str | None) -> Container | None:
        for kubelet in self.kubelets.values():
            found = kubelet.container_of(namespace, name, container or "")
            if found is not None:
                return found
        return None

    def _write_kubeconfig(self) -> None:
        text = (
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: gpuherd-sim\n  cluster:\n    server: {self.url}\n"
            "users:\n- name: gpuherd-sim\n  user:\n    token: gpuherd-sim\n"
            "contexts:\n- name: gpuherd-sim\n  context:\n    cluster: gpuherd-sim\n"
            "    user: gpuherd-sim\n    namespace: default\n"
            "current-context: gpuherd-sim\n"
        )
        tmp = self.kubeconfig.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.kubeconfig)

    def expire_history(self) -> int:
        """Forget the watch history now: watches from an older version get 410 Expired."""
        return self.store.expire_history()

    def stop(self) -> None:
        """End every pod process, then the controllers and the API server (watches end)."""
        self._stop.set()
        for kubelet in self.kubelets.values():
            kubelet.shutdown()
        if self._server is not None:
            self._server.stopping.set()
            self.store.close()
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=10)

    def __enter__(self) -> SimCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
