"""The Kubernetes mode on the simulated cluster, measured from the API server's side: a counting
proxy sits between the broker and the server, so every request is seen with its time.

scale     Job created -> the broker's scale request for the tenant (target: p50 < 100 ms).
overhead  Job created -> Job unsuspended, minus the time the tenant's pod itself took to end
          (scale request -> pod gone) (target: p50 < 500 ms). Peer, by hand as kubectl would:
          scale the tenant to 0, wait for its pod to go, create the Job; its time minus the
          same pod termination.
requests  API requests per admitted Job (release, admission, restore; watches not counted)
          (target: <= 20).
idle      API requests per minute of an idle broker besides its open watches (target: <= 1).
rss       The broker's resident memory after the rounds (target: < 100 MB).

Not measured here: 50 brokers and 500 tenants on one server.

    .venv/bin/python bench/k8s.py [--rounds 10] [--idle-seconds 60] [--trace]

Writes bench/results/k8s.json.
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
from k8s_proxy import CountingProxy

GIB = 1024**3
RESULTS = Path(__file__).parent / "results"
NODE = "k3s-cp-01"
HOLD = [sys.executable, "-m", "gpuherd", "sim", "hold", "--gpu", "$(CUDA_VISIBLE_DEVICES)"]


def tenant(
    name: str,
    vram: int | str,
    priority: int,
    *,
    node: str = NODE,
    command: list[str] | None = None,
) -> dict[str, Any]:
    """An annotated tenant Deployment on `node` (`vram`: GiB, or a quantity such as "100Mi");
    by default its pod holds that much of the node's simulated GPU."""
    quantity = f"{vram}Gi" if isinstance(vram, int) else vram
    held = f"{vram}GiB" if isinstance(vram, int) else vram
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "annotations": {
                "gpuherd.io/vram": quantity,
                "gpuherd.io/priority": str(priority),
                "gpuherd.io/cooldown": "1s",  # rounds follow each other at once
            },
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": node},
                    "terminationGracePeriodSeconds": 5,
                    "containers": [
                        {
                            "name": name,
                            "image": f"example/{name}:1",
                            "command": command or [*HOLD, "--vram", held, "--name", name],
                            "resources": {"limits": {"nvidia.com/gpu": "1"}},
                        }
                    ],
                },
            },
        },
    }


def job(name: str, *, queued: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "suspend": queued,
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "render",
                            "image": "example/render:1",
                            "command": [*HOLD, "--vram", "6GiB", "--name", name, "--for", "1s"],
                            "resources": {"limits": {"nvidia.com/gpu": "1"}},
                        }
                    ],
                }
            },
        },
    }
    if queued:
        body["metadata"]["labels"] = {"gpuherd.io/queue": "gpu"}
        body["metadata"]["annotations"] = {"gpuherd.io/vram": "6Gi", "gpuherd.io/priority": "50"}
    else:
        body["spec"]["template"]["spec"]["nodeSelector"] = {"kubernetes.io/hostname": NODE}
    return body


def wait(check: Any, timeout: float = 60.0, poll: float = 0.005) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(poll)
    raise TimeoutError(f"waited {timeout}s for {check}")


class Bench:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.sim = root / "sim"
        SimHost.init(self.sim, [("NVIDIA GeForce RTX 3080 Ti", 12 * GIB)]).close()
        self.cluster = SimCluster(
            directory=root / "cluster", nodes=[NodeSpec(NODE, (0,), replicas=4)], sim_dir=self.sim
        )
        self.cluster.start()
        api = config.new_client_from_config(str(self.cluster.kubeconfig))  # type: ignore[no-untyped-call]
        self.core: Any
        self.apps: Any
        self.batch: Any
        self.core, self.apps, self.batch = (
            client.CoreV1Api(api), client.AppsV1Api(api), client.BatchV1Api(api)
        )  # fmt: skip
        url = urlparse(self.cluster.url)
        self.proxy = CountingProxy((url.hostname or "127.0.0.1", url.port or 80))
        text = self.cluster.kubeconfig.read_text().replace(
            self.cluster.url, f"http://127.0.0.1:{self.proxy.port}"
        )
        self.kubeconfig = root / "proxied-kubeconfig"
        self.kubeconfig.write_text(text)
        self.broker: subprocess.Popen[bytes] | None = None

    def tenants(self) -> None:
        self.apps.create_namespaced_deployment("default", tenant("ollama", 5, 10))
        self.apps.create_namespaced_deployment("default", tenant("tts", 4, 1))
        wait(lambda: self.used() == 9 * GIB)

    def used(self) -> int:
        with SimHost(self.sim) as host:
            return host.snapshot().devices[0].memory_used

    def tts_pods(self) -> int:
        return len(self.core.list_namespaced_pod("default", label_selector="app=tts").items)

    def tts_back(self) -> bool:
        d = self.apps.read_namespaced_deployment("tts", "default")
        notes = d.metadata.annotations or {}
        return bool(d.status.ready_replicas == 1 and "gpuherd.io/restore-replicas" not in notes)

    def start_broker(self) -> None:
        argv = [
            sys.executable, "-m", "gpuherd", "serve", "--kubernetes",
            "--kubeconfig", str(self.kubeconfig), "--node", NODE, "--backend", "sim",
            "--sim-dir", str(self.sim), "--proc-root", str(self.cluster.directory),
            "--gpu-index", "0", "--state", str(self.root / "state"),
            "--socket", str(self.root / "api.sock"),
        ]  # fmt: skip
        self.broker = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self.broker.stdout is not None
        assert b"listening" in self.broker.stdout.readline()

    def stop(self) -> None:
        if self.broker is not None and self.broker.poll() is None:
            self.broker.send_signal(signal.SIGTERM)
            self.broker.wait(timeout=30)
        self.proxy.close()
        self.cluster.stop()

    def idle(self, seconds: float) -> float:
        time.sleep(3)  # start-up settles
        t0 = time.monotonic()
        time.sleep(seconds)
        plain = [s for s in self.proxy.since(t0) if not s.watch]
        return len(plain) * 60.0 / seconds

    def round(self, i: int, *, trace: bool = False) -> dict[str, float]:
        name = f"render-{i}"
        t0 = time.monotonic()
        self.batch.create_namespaced_job("default", job(name, queued=True))

        def seen(method: str, needle: str) -> float | None:
            return next(
                (s.at for s in self.proxy.since(t0) if s.method == method and needle in s.path),
                None,
            )

        wait(lambda: seen("PUT", "/deployments/tts/scale"))
        t_scale = seen("PUT", "/deployments/tts/scale") or 0.0
        if trace:  # where the time to the scale went, request by request
            for x in self.proxy.since(t0):
                if x.at <= t_scale and not x.watch:
                    print(f"{(x.at - t0) * 1000:7.1f} ms {x.method} {x.path[:90]}")
        t_gone = wait(lambda: self.tts_pods() == 0)
        # One PATCH pins the Job to the node and unsuspends it.
        wait(lambda: seen("PATCH", f"/jobs/{name}"))
        t_unsuspend = seen("PATCH", f"/jobs/{name}") or 0.0
        wait(lambda: self.batch.read_namespaced_job(name, "default").status.succeeded, 60, 0.05)
        wait(self.tts_back, 60, 0.05)
        time.sleep(3.0)  # the broker's last writes after the restore, and the tenant's cooldown
        requests = len([s for s in self.proxy.since(t0) if not s.watch])
        if trace:  # and the whole round's
            print(f"  round {i}: {requests} requests")
            for x in self.proxy.since(t0):
                if not x.watch:
                    print(f"  {(x.at - t0) * 1000:7.1f} ms {x.method} {x.path[:90]}")
        return {
            "scale_ms": (t_scale - t0) * 1000,
            "overhead_ms": ((t_unsuspend - t0) - (t_gone - t_scale)) * 1000,
            "termination_ms": (t_gone - t_scale) * 1000,
            "requests": requests,
        }

    def by_hand(self, i: int) -> dict[str, float]:
        """What a script with the client does: scale, wait for the pod to go, create the Job."""
        name = f"hand-{i}"
        t0 = time.monotonic()
        self.apps.patch_namespaced_deployment_scale("tts", "default", {"spec": {"replicas": 0}})
        t_scale = time.monotonic()
        t_gone = wait(lambda: self.tts_pods() == 0)
        self.batch.create_namespaced_job("default", job(name, queued=False))
        t_job = time.monotonic()
        wait(lambda: self.batch.read_namespaced_job(name, "default").status.succeeded, 60, 0.05)
        self.apps.patch_namespaced_deployment_scale("tts", "default", {"spec": {"replicas": 1}})
        wait(lambda: self.used() == 9 * GIB, 60, 0.05)
        return {
            "scale_ms": (t_scale - t0) * 1000,
            "overhead_ms": ((t_job - t0) - (t_gone - t_scale)) * 1000,
            "termination_ms": (t_gone - t_scale) * 1000,
        }


def p50(rows: list[dict[str, float]], key: str) -> float:
    return round(statistics.median(r[key] for r in rows), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--trace", action="store_true", help="print each round's requests")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp))
        try:
            bench.tenants()
            hand = [bench.by_hand(i) for i in range(args.rounds)]
            bench.start_broker()
            idle = bench.idle(args.idle_seconds)
            rounds = [bench.round(i, trace=args.trace) for i in range(args.rounds)]
            assert bench.broker is not None
            rss = psutil.Process(bench.broker.pid).memory_info().rss
        finally:
            bench.stop()
    result = {
        "rounds": args.rounds,
        "broker": {
            "scale_p50_ms": p50(rounds, "scale_ms"),
            "overhead_p50_ms": p50(rounds, "overhead_ms"),
            "termination_p50_ms": p50(rounds, "termination_ms"),
            "requests_per_job_p50": p50(rounds, "requests"),
            "requests_per_job_max": max(r["requests"] for r in rounds),
            "idle_requests_per_minute": round(idle, 2),
            "rss_mb": round(rss / 2**20, 1),
        },
        "by_hand": {
            "scale_p50_ms": p50(hand, "scale_ms"),
            "overhead_p50_ms": p50(hand, "overhead_ms"),
            "termination_p50_ms": p50(hand, "termination_ms"),
        },
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "k8s.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
