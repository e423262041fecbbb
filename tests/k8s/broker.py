"""Brokers in the Kubernetes mode as real processes (`gpuherd serve --kubernetes`), against a
simulated cluster, and the objects the end-to-end tests create."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gpuherd.gpu.sim import SimHost
from gpuherd.simcluster import NodeSpec, SimCluster
from tests.simcluster.conftest import Kube, start_cluster

CP = "k3s-cp-01"


def one_node(tmp_path: Path, sim_dir: Path) -> Iterator[Kube]:
    """The `kube` fixture of most end-to-end tests: one time-sliced GPU node, k3s-cp-01,
    owning GPU 0 (12 GiB)."""
    yield from start_cluster(tmp_path, sim_dir, [NodeSpec(CP, (0,), replicas=4)])


def used(sim_dir: Path, gpu: int = 0) -> int:
    """Bytes in use on the simulated GPU `gpu`."""
    with SimHost(sim_dir) as host:
        return next(d.memory_used for d in host.snapshot().devices if d.index == gpu)


def held_by(sim_dir: Path, name: str) -> int:
    """Bytes the simulated processes named `name` hold, on every GPU."""
    with SimHost(sim_dir) as host:
        return sum(p.used_bytes or 0 for p in host.snapshot().processes if p.name == name)


@contextmanager
def broker(
    cluster: SimCluster,
    sim_dir: Path,
    node: str,
    gpu: int,
    state: Path,
    *,
    env: dict[str, str] | None = None,
    stderr: list[str] | None = None,
    config: Path | None = None,
) -> Iterator[subprocess.Popen[str]]:
    """A broker on `node` (GPU `gpu`), with `config` as its `-c` when given; what it wrote to
    stderr lands in `stderr` at the end."""
    argv = [
        sys.executable, "-m", "gpuherd", "serve", "--kubernetes",
        "--kubeconfig", str(cluster.kubeconfig), "--node", node,
        "--backend", "sim", "--sim-dir", str(sim_dir),
        "--proc-root", str(cluster.directory), "--gpu-index", str(gpu),
        "--state", str(state), "--socket", str(state / "api.sock"),
    ]  # fmt: skip
    if config is not None:
        argv += ["-c", str(config)]
    environ = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "NODE_NAME")}
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**environ, **(env or {})},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if '"listening"' not in line:
            proc.kill()
            _, err = proc.communicate(timeout=20)
            raise AssertionError(f"the broker did not start: {line}{err}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if stderr is not None and proc.stderr is not None:
            stderr.append(proc.stderr.read())
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def cli(state: Path, *args: str) -> Any:
    out = subprocess.run(
        [sys.executable, "-m", "gpuherd", *args, "--json", "--socket", str(state / "api.sock")],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)


def hold_for(vram: str, name: str, seconds: str | None = None) -> list[str]:
    argv = [sys.executable, "-m", "gpuherd", "sim", "hold", "--gpu", "$(CUDA_VISIBLE_DEVICES)",
            "--vram", vram, "--name", name]  # fmt: skip
    return [*argv, "--for", seconds] if seconds else argv


def tenant(name: str, vram: str, priority: int, node: str, **notes: str) -> dict[str, Any]:
    container = {
        "name": name,
        "image": f"example/{name}:1",
        "command": hold_for(vram, name),
        "resources": {"limits": {"nvidia.com/gpu": "1"}},
    }
    annotations = {
        "gpuherd.io/vram": vram.replace("GiB", "Gi"),
        "gpuherd.io/priority": str(priority),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "annotations": {**annotations, **notes}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [container],
                    "nodeSelector": {"kubernetes.io/hostname": node},
                    "terminationGracePeriodSeconds": 5,
                },
            },
        },
    }


def running(deployment: dict[str, Any], command: list[str], *, grace: int = 5) -> dict[str, Any]:
    """`deployment` (see `tenant`) with its pods running `command` instead of a holder, and
    `grace` seconds between their TERM and KILL."""
    pod = deployment["spec"]["template"]["spec"]
    pod["containers"][0]["command"] = command
    pod["terminationGracePeriodSeconds"] = grace
    return deployment


def queued_job(name: str, vram: str, priority: int, seconds: str = "1s") -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "labels": {"gpuherd.io/queue": "gpu"},
            "annotations": {
                "gpuherd.io/vram": vram.replace("GiB", "Gi"),
                "gpuherd.io/priority": str(priority),
            },
        },
        "spec": {
            "suspend": True,
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "render",
                            "image": "example/render:1",
                            "command": hold_for(vram, name, seconds),
                            "resources": {"limits": {"nvidia.com/gpu": "1"}},
                        }
                    ],
                }
            },
        },
    }
