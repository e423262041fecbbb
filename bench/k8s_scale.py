"""Kubernetes mode at scale: 50 node brokers and 500 tenants on one simulated API server.

Each of N nodes (default 50) has one simulated 12 GiB GPU and T annotated tenant Deployments
(default 10: 500 in all): one holds 4 GiB (priority 1), the others are idle services that hold
nothing (priority 5). One `gpuherd serve --kubernetes` per node, each a process of its own as
the DaemonSet runs them, all talking to the server through one counting proxy. Then:

idle      API requests per broker per minute besides the open watches (target: <= 1).
pinned    N Jobs, one per node (nodeSelector), each needing 10 GiB: each node's broker releases
          its 4 GiB tenant, admits the Job and restores the tenant. Requests per admitted Job,
          all brokers together, watches not counted (target: <= 20). Created in waves
          (--wave, default 5) that end before the next starts.
unpinned  N Jobs that may land on any GPU node: the brokers decide among themselves which admits
          each (a Lease per Job). The same count, and how many Jobs each node took.
rss       Each broker's resident memory at the end: max and median (target: < 100 MB).

    .venv/bin/python bench/k8s_scale.py [--nodes 50] [--tenants-per-node 10] [--idle-seconds 60]
        [--wave 5] [--only pinned|unpinned]

Writes bench/results/k8s_scale.json. Needs about 6 GB of memory for 50 brokers.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psutil
from kubernetes import client, config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpuherd.gpu.sim import SimHost
from gpuherd.simcluster import NodeSpec, SimCluster
from k8s import tenant
from k8s_proxy import CountingProxy

GIB = 1024**3
RESULTS = Path(__file__).parent / "results"
HOLD = [sys.executable, "-m", "gpuherd", "sim", "hold", "--gpu", "$(CUDA_VISIBLE_DEVICES)"]
IDLE = ["sleep", "86400"]  # an idle service: a process, no GPU memory


def node_name(i: int) -> str:
    return f"gpu-node-{i:02d}"


def what(path: str) -> str:
    """A request's path as the kind of object it names: `leases/gpu`, `deployments/scale`..."""
    parts = path.split("?", maxsplit=1)[0].strip("/").split("/")
    if "namespaces" in parts and len(parts) > parts.index("namespaces") + 2:
        rest = parts[parts.index("namespaces") + 2 :]
    else:
        rest = parts[-1:]
    kind = rest[0]
    if kind == "leases" and len(rest) > 1:
        return "leases/" + rest[1].split("-")[1]  # gpuherd-gpu-... or gpuherd-job-...
    return "/".join([kind, *rest[2:3]])


def job(name: str, node: str | None) -> Any:
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [
            {
                "name": "render",
                "image": "example/render:1",
                "command": [*HOLD, "--vram", "10GiB", "--name", name, "--for", "1s"],
                "resources": {"limits": {"nvidia.com/gpu": "1"}},
            }
        ],
    }
    if node is not None:
        spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "labels": {"gpuherd.io/queue": "gpu"},
            "annotations": {"gpuherd.io/vram": "10Gi", "gpuherd.io/priority": "50"},
        },
        "spec": {"suspend": True, "backoffLimit": 0, "template": {"spec": spec}},
    }


def wait(check: Any, timeout: float, poll: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(poll)
    raise TimeoutError(f"waited {timeout}s for {check}")


class Scale:
    def __init__(self, root: Path, nodes: int, per_node: int) -> None:
        self.root, self.nodes, self.per_node = root, nodes, per_node
        self.sim = root / "sim"
        SimHost.init(self.sim, [("NVIDIA GeForce RTX 3080 Ti", 12 * GIB)] * nodes).close()
        # Time-slicing replicas: every tenant's pod and a Job's get a share of the node's GPU.
        specs = [NodeSpec(node_name(i), (i,), replicas=per_node + 2) for i in range(nodes)]
        self.cluster = SimCluster(directory=root / "cluster", nodes=specs, sim_dir=self.sim)
        self.cluster.start()
        api = config.new_client_from_config(str(self.cluster.kubeconfig))  # type: ignore[no-untyped-call]
        self.apps: Any = client.AppsV1Api(api)
        self.batch: Any = client.BatchV1Api(api)
        url = urlparse(self.cluster.url)
        self.proxy = CountingProxy((url.hostname or "127.0.0.1", url.port or 80))
        text = self.cluster.kubeconfig.read_text().replace(
            self.cluster.url, f"http://127.0.0.1:{self.proxy.port}"
        )
        self.kubeconfig = root / "proxied-kubeconfig"
        self.kubeconfig.write_text(text)
        self.brokers: list[subprocess.Popen[bytes]] = []

    def held(self) -> int:
        with SimHost(self.sim) as host:
            return sum(d.memory_used for d in host.snapshot().devices)

    def tenants(self) -> None:
        for i in range(self.nodes):
            node = node_name(i)
            self.apps.create_namespaced_deployment("default", tenant(f"big-{i}", 4, 1, node=node))
            for k in range(self.per_node - 1):
                body = tenant(f"svc-{i}-{k}", "100Mi", 5, node=node, command=IDLE)
                self.apps.create_namespaced_deployment("default", body)
        wait(lambda: self.held() == self.nodes * 4 * GIB, timeout=600, poll=1.0)

    def start_brokers(self) -> None:
        for i in range(self.nodes):
            state = self.root / f"state-{i}"
            argv = [
                sys.executable, "-m", "gpuherd", "serve", "--kubernetes",
                "--kubeconfig", str(self.kubeconfig), "--node", node_name(i),
                "--backend", "sim", "--sim-dir", str(self.sim),
                "--proc-root", str(self.cluster.directory), "--gpu-index", str(i),
                "--state", str(state), "--socket", str(self.root / f"api-{i}.sock"),
            ]  # fmt: skip
            self.brokers.append(
                subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            )
        for proc in self.brokers:
            assert proc.stdout is not None
            assert b"listening" in proc.stdout.readline()

    def plain_since(self, t0: float) -> int:
        return len([s for s in self.proxy.since(t0) if not s.watch])

    def idle(self, seconds: float) -> float:
        time.sleep(10)  # start-up settles
        t0 = time.monotonic()
        time.sleep(seconds)
        return self.plain_since(t0) * 60.0 / seconds / self.nodes

    def phase(self, prefix: str, *, pinned: bool, wave: int) -> dict[str, Any]:
        t0 = time.monotonic()
        names = [f"{prefix}-{i}" for i in range(self.nodes)]
        # In waves: the simulated server and its 50 kubelets are one Python process on this
        # machine's cores; all at once they answer too slowly for the releases' timeouts.
        for start in range(0, self.nodes, wave):
            batch = names[start : start + wave]
            for name in batch:
                i = names.index(name)
                body = job(name, node_name(i) if pinned else None)
                self.batch.create_namespaced_job("default", body)

            def done(batch: list[str] = batch) -> bool:
                jobs = self.batch.list_namespaced_job("default").items
                ended = {j.metadata.name for j in jobs if j.status.succeeded or j.status.failed}
                return all(n in ended for n in batch)

            wait(done, timeout=600, poll=1.0)
        wait(lambda: self.held() == self.nodes * 4 * GIB, timeout=600, poll=1.0)
        time.sleep(5.0)  # the brokers' last writes after the restores
        took = time.monotonic() - t0
        where: dict[str, int] = {}
        for j in self.batch.list_namespaced_job("default").items:
            if j.metadata.name in names:
                selector = j.spec.template.spec.node_selector or {}
                node = selector.get("kubernetes.io/hostname", "?")
                where[node] = where.get(node, 0) + 1
        jobs = self.batch.list_namespaced_job("default").items
        succeeded = sum(1 for j in jobs if j.metadata.name in names and j.status.succeeded)
        kinds: dict[str, int] = {}
        for seen in self.proxy.since(t0):
            if not seen.watch:
                key = f"{seen.method} {what(seen.path)}"
                kinds[key] = kinds.get(key, 0) + 1
        return {
            "jobs": self.nodes,
            "succeeded": succeeded,
            "wave": wave,
            "requests_per_job": round(self.plain_since(t0) / self.nodes, 1),
            "seconds": round(took, 1),
            "nodes_used": len(where),
            "most_jobs_on_one_node": max(where.values()),
            # Where the requests went, per Job: method and the kind of object.
            "per_job": {k: round(v / self.nodes, 2) for k, v in sorted(kinds.items())},
        }

    def rss(self) -> list[float]:
        return [psutil.Process(p.pid).memory_info().rss / 2**20 for p in self.brokers]

    def stop(self) -> None:
        for proc in self.brokers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.brokers:
            proc.wait(timeout=60)
            if proc.stdout is not None:
                proc.stdout.close()
        self.proxy.close()
        self.cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--tenants-per-node", type=int, default=10)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--wave", type=int, default=5, help="Jobs created together")
    parser.add_argument(
        "--only", choices=("pinned", "unpinned"), help="one phase (results printed, not written)"
    )
    args = parser.parse_args()
    pinned: dict[str, Any] | None = None
    unpinned: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        bench = Scale(Path(tmp), args.nodes, args.tenants_per_node)
        try:
            t0 = time.monotonic()
            bench.tenants()
            print(f"{args.nodes * args.tenants_per_node} tenants up", flush=True)
            bench.start_brokers()
            print(f"{args.nodes} brokers up after {time.monotonic() - t0:.0f}s", flush=True)
            idle = bench.idle(args.idle_seconds)
            print(f"idle: {idle:.2f} requests per broker per minute", flush=True)
            if args.only in (None, "pinned"):
                pinned = bench.phase("pinned", pinned=True, wave=args.wave)
                print(f"pinned: {json.dumps(pinned)}", flush=True)
            if args.only in (None, "unpinned"):
                unpinned = bench.phase("any", pinned=False, wave=args.wave)
                print(f"unpinned: {json.dumps(unpinned)}", flush=True)
            rss = bench.rss()
        finally:
            bench.stop()
    result = {
        "nodes": args.nodes,
        "tenants": args.nodes * args.tenants_per_node,
        "idle_requests_per_broker_per_minute": round(idle, 2),
        "pinned": pinned,
        "unpinned": unpinned,
        "broker_rss_mb": {"max": round(max(rss), 1), "median": round(statistics.median(rss), 1)},
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
    }
    if args.only is None:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "k8s_scale.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
