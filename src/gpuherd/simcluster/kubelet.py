"""A simulated kubelet per node: runs each bound pod's containers as local processes (no shell)
with the GPU env of its allocation and the pod's identity, reports phases, exit codes and
readiness as the real kubelet does, and ends pods with TERM, then KILL after the grace period.

Pod identity for gpuherd's attribution: for every container process (and its children) the
kubelet writes `DIR/proc/PID/cgroup` with the systemd-driver kubepods path of a containerd
container (pod UID and QoS class in it), and links `stat` and `cmdline` to the real /proc.
Attribution reads it with `root=DIR` (see `gpuherd.gpu.attribution.read_origin`). The same
identity is also in each process's environment (GPUHERD_POD_UID, POD_NAME, ...)."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpuherd.gpu.procinfo import read_stat
from gpuherd.simcluster import errors
from gpuherd.simcluster.containers import Container, start_container
from gpuherd.simcluster.nodes import GPU, NodeSpec, node_ip
from gpuherd.simcluster.podutil import PODS
from gpuherd.simcluster.scheduler import pod_requests
from gpuherd.simcluster.store import Store, clone, now_iso

Obj = dict[str, Any]
__all__ = ["Kubelet", "PodRun", "cgroup_text"]
log = logging.getLogger(__name__)


@dataclass
class PodRun:
    uid: str
    namespace: str
    name: str
    ip: str
    gpus: list[int]
    directory: Path
    containers: dict[str, Container] = field(default_factory=dict)
    term_sent_at: float | None = None


def cgroup_text(pod: Obj, container_id: str) -> str:
    uid = pod["metadata"]["uid"].replace("-", "_")
    qos = (pod.get("status") or {}).get("qosClass", "BestEffort")
    scope = f"cri-containerd-{container_id}.scope"
    if qos == "Guaranteed":
        return f"0::/kubepods.slice/kubepods-pod{uid}.slice/{scope}\n"
    level = qos.lower()
    return f"0::/kubepods.slice/kubepods-{level}.slice/kubepods-{level}-pod{uid}.slice/{scope}\n"


class Kubelet:
    def __init__(
        self,
        *,
        store: Store,
        node: NodeSpec,
        index: int,
        directory: Path,
        sim_dir: Path | None,
        tick: float,
        api_url: str = "",
        uuids: dict[int, str] | None = None,
    ) -> None:
        self.store, self.node, self.index, self.tick = store, node, index, tick
        self.uuids = uuids or {}
        self.directory = directory
        self.proc_root = directory / "proc"
        self.sim_dir = sim_dir
        self.api_url = api_url
        self.runs: dict[str, PodRun] = {}
        self._ips = {f"127.0.{index + 1}.{n}" for n in range(2, 255)}
        self._slots: dict[int, int] = dict.fromkeys(node.gpus, 0)  # GPU -> shares in use
        self._lock = threading.Lock()

    # loop --------------------------------------------------------------------------------------
    def run_once(self, pods: list[Obj]) -> None:
        """One pass over the pods bound to this node (read-only views from the store)."""
        with self._lock:
            try:
                self.sync(pods)
            except errors.ApiError:
                pass  # a pod deleted under us; the next pass sees the new state
            except Exception:  # a kubelet bug must not stop the node; it is logged
                log.exception("simulated kubelet %s failed one pass", self.node.name)

    def sync(self, pods: list[Obj]) -> None:
        present = {p["metadata"]["uid"] for p in pods}
        for uid in [u for u in self.runs if u not in present]:
            self._kill_now(self.runs.pop(uid))  # force-deleted: no grace left
        for pod in pods:
            uid = pod["metadata"]["uid"]
            run = self.runs.get(uid)
            if pod["metadata"].get("deletionTimestamp"):
                self._terminate(pod, run)
            elif run is None:
                if (pod.get("status") or {}).get("phase", "Pending") == "Pending":
                    self._start(pod)
            else:
                self._update(pod, run)

    # start -------------------------------------------------------------------------------------
    def _allocate_gpus(self, count: int) -> list[int] | None:
        if count == 0:
            return []
        free = sorted((used, gpu) for gpu, used in self._slots.items() if used < self.node.replicas)
        if self.node.replicas == 1 and len(free) < count:
            return None
        if self.node.replicas > 1 and sum(self.node.replicas - u for u, _ in free) < count:
            return None
        chosen: list[int] = []
        while len(chosen) < count:
            used, gpu = min(
                (self._slots[g], g) for g in self._slots if self._slots[g] < self.node.replicas
            )
            self._slots[gpu] = used + 1
            chosen.append(gpu)
        return chosen

    def _reject(self, pod: Obj, wanted: int) -> None:
        capacity = len(self.node.gpus) * self.node.replicas
        used = sum(self._slots.values())

        def fail(p: Obj) -> None:
            p["status"].update(
                phase="Failed",
                reason=f"OutOf{GPU}",
                startTime=now_iso(),
                message=f"Pod was rejected: Node didn't have enough resource: {GPU}, requested: "
                f"{wanted}, used: {used}, capacity: {capacity}",
            )

        self.store.mutate(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"], fail)

    def _pod_env(self, pod: Obj, ip: str, gpus: list[int]) -> dict[str, str]:
        meta = pod["metadata"]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "HOSTNAME": meta["name"],
            "POD_NAME": meta["name"],
            "POD_NAMESPACE": meta["namespace"],
            "POD_UID": meta["uid"],
            "POD_IP": ip,
            "NODE_NAME": self.node.name,
            "GPUHERD_POD_UID": meta["uid"],
        }
        if self.sim_dir is not None:
            env["GPUHERD_SIM_DIR"] = str(self.sim_dir)
            env["GPUHERD_BACKEND"] = "sim"
        if self.api_url:
            env["GPUHERD_SIM_CLUSTER_URL"] = self.api_url
            # What in-cluster config is to a real pod: the client finds the API server.
            env["KUBECONFIG"] = str(self.directory / "kubeconfig")
        if gpus:
            # As the device plugin sets it (device IDs are UUIDs); CUDA_VISIBLE_DEVICES carries
            # the simulated host's indices, which `gpuherd sim hold --gpu` takes.
            env["NVIDIA_VISIBLE_DEVICES"] = ",".join(self.uuids.get(g, str(g)) for g in gpus)
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)
        return env

    def _start(self, pod: Obj) -> None:
        meta = pod["metadata"]
        wanted = int(pod_requests(pod).get(GPU, 0))
        gpus = self._allocate_gpus(wanted)
        if gpus is None:
            self._reject(pod, wanted)
            return
        ip = min(self._ips, key=lambda a: int(a.rsplit(".", 1)[1]))
        self._ips.discard(ip)
        run = PodRun(
            meta["uid"],
            meta["namespace"],
            meta["name"],
            ip,
            gpus,
            self.directory / "pods" / f"{meta['namespace']}_{meta['name']}_{meta['uid']}",
        )
        run.directory.mkdir(parents=True, exist_ok=True)
        self.runs[run.uid] = run
        base = self._pod_env(pod, ip, gpus)
        for spec in pod["spec"].get("containers") or []:
            container = run.containers[spec["name"]] = start_container(
                pod, spec, base=base, directory=run.directory, ip=ip, host_ip=node_ip(self.index)
            )
            container.cgroup = cgroup_text(pod, container.container_id)
            if container.proc is not None:
                self._attach(container.proc.pid, container)
        self._publish(pod, run)

    # running -----------------------------------------------------------------------------------
    def _update(self, pod: Obj, run: PodRun) -> None:
        policy = pod["spec"].get("restartPolicy", "Always")
        now = time.monotonic()
        for c in run.containers.values():
            c.poll()
            if c.terminated is not None and c.restart_at is None:
                code = int(c.terminated["exitCode"])
                if policy == "Always" or (policy == "OnFailure" and code != 0):
                    c.restart_at = now + min(1.0 * 2**c.restart_count, 30.0)
            if c.restart_at is not None and now >= c.restart_at:
                c.restart()
                c.cgroup = cgroup_text(pod, c.container_id)
                if c.proc is not None:
                    self._attach(c.proc.pid, c)
        self._publish(pod, run)
        if self._phase(pod, run) in ("Succeeded", "Failed"):
            self._release(run)

    def _phase(self, pod: Obj, run: PodRun) -> str:
        states = list(run.containers.values())
        if any(c.running or c.restart_at is not None for c in states):
            return "Running"
        if all(c.terminated is not None and c.terminated["exitCode"] == 0 for c in states):
            return "Succeeded"
        return "Failed"

    def _publish(self, pod: Obj, run: PodRun) -> None:
        phase = self._phase(pod, run)
        statuses = [c.status() for c in run.containers.values()]
        all_ready = phase == "Running" and all(s["ready"] for s in statuses)

        def write(p: Obj) -> None:
            status = p.setdefault("status", {})
            old = {c["type"]: c for c in status.get("conditions") or []}

            def cond(kind: str, value: bool, reason: str | None = None) -> Obj:
                text = "True" if value else "False"
                prev = old.get(kind)
                if prev is not None and prev["status"] == text:
                    return dict(prev)
                made: Obj = {
                    "type": kind,
                    "status": text,
                    "lastProbeTime": None,
                    "lastTransitionTime": now_iso(),
                }
                if reason and not value:
                    made["reason"] = reason
                return made

            finished = phase in ("Succeeded", "Failed")
            status["conditions"] = [
                cond("PodReadyToStartContainers", not finished),
                cond("Initialized", True),
                cond("Ready", all_ready, "PodCompleted" if finished else "ContainersNotReady"),
                cond(
                    "ContainersReady",
                    all_ready,
                    "PodCompleted" if finished else "ContainersNotReady",
                ),
                old.get("PodScheduled") or cond("PodScheduled", True),
            ]
            status.update(
                phase=phase,
                hostIP=node_ip(self.index),
                hostIPs=[{"ip": node_ip(self.index)}],
                podIP=run.ip,
                podIPs=[{"ip": run.ip}],
                containerStatuses=statuses,
            )
            status.setdefault("startTime", now_iso())

        trial = clone(pod)
        write(trial)
        if trial.get("status") != pod.get("status"):  # most passes change nothing
            self.store.mutate(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"], write)

    # ending ------------------------------------------------------------------------------------
    def _terminate(self, pod: Obj, run: PodRun | None) -> None:
        meta = pod["metadata"]
        if run is not None and any(c.running for c in run.containers.values()):
            grace = float(meta.get("deletionGracePeriodSeconds", 30))
            now = time.monotonic()
            if run.term_sent_at is None:
                run.term_sent_at = now
                for c in run.containers.values():
                    c.signal(signal.SIGTERM)
            elif now - run.term_sent_at >= grace:
                for c in run.containers.values():
                    c.signal(signal.SIGKILL)
            for c in run.containers.values():
                c.poll()
            if any(c.running for c in run.containers.values()):
                return
        if run is not None:
            self._cleanup(self.runs.pop(run.uid))
        with contextlib.suppress(errors.ApiError):
            self.store.remove(PODS, meta["namespace"], meta["name"])

    def _release(self, run: PodRun) -> None:
        for gpu in run.gpus:
            self._slots[gpu] -= 1
        run.gpus = []
        for c in run.containers.values():
            c.stop_probe()

    def _cleanup(self, run: PodRun) -> None:
        self._release(run)
        self._ips.add(run.ip)
        for c in run.containers.values():
            for pid in c.pids:
                shutil.rmtree(self.proc_root / str(pid), ignore_errors=True)
        shutil.rmtree(run.directory, ignore_errors=True)

    def _kill_now(self, run: PodRun) -> None:
        for c in run.containers.values():
            c.signal(signal.SIGKILL)
            c.wait(5.0)
        self._cleanup(run)

    def shutdown(self) -> None:
        """End every pod process: TERM, a short grace, then KILL."""
        with self._lock:
            for run in self.runs.values():
                for c in run.containers.values():
                    c.signal(signal.SIGTERM)
            deadline = time.monotonic() + 5.0
            for run in self.runs.values():
                for c in run.containers.values():
                    c.wait(max(0.0, deadline - time.monotonic()))
            for run in list(self.runs.values()):
                self._kill_now(run)
            self.runs.clear()

    # attribution and logs ----------------------------------------------------------------------
    def _attach(self, pid: int, container: Container) -> None:
        """Write PROC_ROOT/PID/cgroup naming the pod, so attribution finds its owner."""
        entry = self.proc_root / str(pid)
        if pid in container.pids and (entry / "cgroup").exists():
            return
        container.pids.add(pid)
        entry.mkdir(parents=True, exist_ok=True)
        (entry / "cgroup").write_text(container.cgroup)
        for name in ("stat", "cmdline", "status"):
            with contextlib.suppress(FileExistsError):
                (entry / name).symlink_to(f"/proc/{pid}/{name}")

    def attach_children(self, children: dict[int, list[int]]) -> None:
        """Give the processes a container started since the last call their cgroup files."""
        with self._lock:
            for run in self.runs.values():
                for c in run.containers.values():
                    for pid in c.descendants(children):
                        self._attach(pid, c)

    def container_of(self, namespace: str, name: str, container: str) -> Container | None:
        for run in list(self.runs.values()):
            if run.namespace == namespace and run.name == name:
                return run.containers.get(container)
        return None


def children_map() -> dict[int, list[int]]:
    """Every process's children, read once from /proc for all kubelets."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = read_stat(int(name))
            if stat is not None:
                children.setdefault(stat.ppid, []).append(stat.pid)
    return children


def attach_loop(kubelets: list[Kubelet], stop: threading.Event, interval: float = 0.5) -> None:
    """Keep giving pod processes' children their cgroup files (a pod's workers count too)."""
    while not stop.wait(interval):
        if any(k.runs for k in kubelets):
            children = children_map()
            for kubelet in kubelets:
                kubelet.attach_children(children)


def run_kubelets(kubelets: list[Kubelet], store: Store, stop: threading.Event, tick: float) -> None:
    """Every kubelet's passes from one thread and one read of the pods per tick: threads per
    node polling the store would contend for its lock and the GIL."""
    by_name = {k.node.name: k for k in kubelets}
    while not stop.is_set():
        mine: dict[str, list[Obj]] = {name: [] for name in by_name}
        for pod in store.list(PODS, borrow=True)[0]:
            node = pod["spec"].get("nodeName")
            if node in mine:
                mine[node].append(pod)
        for name, kubelet in by_name.items():
            if stop.is_set():
                break
            kubelet.run_once(mine[name])
        stop.wait(tick)
