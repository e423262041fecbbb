"""`gpuherd sim cluster up` as a user runs it: a foreground process until SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from tests.conftest import gpuherd_argv
from tests.simcluster.conftest import wait_for


def test_up_serves_writes_a_kubeconfig_and_ends_its_pods_on_sigterm(
    tmp_path: Path, sim_dir: Path
) -> None:
    directory = tmp_path / "cluster"
    proc = subprocess.Popen(
        gpuherd_argv(
            "sim",
            "cluster",
            "up",
            "--dir",
            str(directory),
            "--node",
            "k3s-cp-01:0",
            "--node",
            "k3s-gpu-02:1",
            "--sim-dir",
            str(sim_dir),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("listening http://127.0.0.1:"), first
        api = config.new_client_from_config(str(directory / "kubeconfig"))  # type: ignore[no-untyped-call]
        core: Any = client.CoreV1Api(api)
        assert sorted(n.metadata.name for n in core.list_node().items) == [
            "k3s-cp-01",
            "k3s-gpu-02",
        ]
        assert api.configuration.host == first.split()[1]
        core.create_namespaced_pod(
            "default",
            {
                "metadata": {"name": "idle"},
                "spec": {"containers": [{"name": "c", "image": "x", "command": ["sleep", "60"]}]},
            },
        )
        pids = wait_for(
            lambda: [int(p.name) for p in (directory / "proc").glob("*")], what="the pod's process"
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_bad_node_is_exit_2_with_the_reason(tmp_path: Path) -> None:
    done = subprocess.run(
        gpuherd_argv("sim", "cluster", "up", "--dir", str(tmp_path), "--node", "GPU_Node"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--node 'GPU_Node': the name must be a DNS label" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_gpu_is_exit_3(tmp_path: Path, sim_dir: Path) -> None:
    done = subprocess.run(
        gpuherd_argv(
            "sim",
            "cluster",
            "up",
            "--dir",
            str(tmp_path),
            "--node",
            "a:5",
            "--sim-dir",
            str(sim_dir),
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3
    assert "node a: no simulated GPU 5" in done.stderr


def test_help_teaches(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gpuherd", "sim", "cluster", "up", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0
    assert "NAME[:GPU_INDEX" in done.stdout
