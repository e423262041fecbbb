"""The simulated kubelet: processes with the pod's env and GPU allocation, exit codes and
phases, readiness probes, TERM then KILL after the grace period, pod IPs on loopback, and the
pod identity gpuherd's attribution reads."""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from gpuherd.gpu.attribution import read_origin
from gpuherd.gpu.sim import SimHost
from tests.simcluster.conftest import Kube, wait_for

ENV_DUMP = "import json, os; print(json.dumps(dict(os.environ)))"


def bare_pod(name: str, command: list[str], **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "x", "command": command}
    container.update(spec.pop("container", {}))
    return {
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"restartPolicy": "Never", "containers": [container], **spec},
    }


def phase_of(kube: Kube, name: str, phase: str) -> Any:
    return wait_for(
        lambda: [
            p for p in [kube.core.read_namespaced_pod(name, "default")] if p.status.phase == phase
        ],
        what=f"{name} {phase}",
    )[0]


def test_env_downward_api_and_gpu_allocation(kube: Kube, sim_dir: Path) -> None:
    kube.core.create_namespaced_pod(
        "default",
        bare_pod(
            "env",
            [sys.executable, "-c", ENV_DUMP],
            nodeName="k3s-gpu-02",
            container={
                "resources": {"limits": {"nvidia.com/gpu": "1"}},
                "env": [
                    {"name": "MY_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    {"name": "GREETING", "value": "on $(MY_NODE)"},
                ],
            },
        ),
    )
    pod = phase_of(kube, "env", "Succeeded")
    env = json.loads(kube.core.read_namespaced_pod_log("env", "default"))
    assert env["POD_IP"] == pod.status.pod_ip
    assert pod.status.pod_ip.startswith("127.0.2.")  # the second node's loopback range
    assert env["POD_NAME"] == "env"
    assert env["GPUHERD_POD_UID"] == pod.metadata.uid
    assert env["CUDA_VISIBLE_DEVICES"] == "1"
    with SimHost(sim_dir) as host:
        uuid = next(d.uuid for d in host.snapshot().devices if d.index == 1)
    assert env["NVIDIA_VISIBLE_DEVICES"] == uuid  # as the device plugin sets it
    assert env["GPUHERD_SIM_DIR"] == str(sim_dir)
    assert env["MY_NODE"] == "k3s-gpu-02"
    assert env["GREETING"] == "on k3s-gpu-02"


def test_exit_code_and_start_error(kube: Kube) -> None:
    kube.core.create_namespaced_pod(
        "default", bare_pod("fails", [sys.executable, "-c", "raise SystemExit(7)"])
    )
    pod = phase_of(kube, "fails", "Failed")
    state = pod.status.container_statuses[0].state.terminated
    assert (state.exit_code, state.reason) == (7, "Error")
    assert pod.status.container_statuses[0].container_id.startswith("containerd://")
    kube.core.create_namespaced_pod("default", bare_pod("missing", ["no-such-binary-xyz"]))
    state = phase_of(kube, "missing", "Failed").status.container_statuses[0].state.terminated
    assert (state.exit_code, state.reason) == (128, "StartError")


def test_delete_sends_term_then_kill_after_the_grace_period(kube: Kube) -> None:
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    kube.core.create_namespaced_pod(
        "default",
        bare_pod("stubborn", [sys.executable, "-c", stubborn], terminationGracePeriodSeconds=2),
    )
    pod = phase_of(kube, "stubborn", "Running")
    run = kube.cluster.kubelets[pod.spec.node_name].runs[pod.metadata.uid]
    proc = run.containers["main"].proc
    assert proc is not None
    time.sleep(0.5)  # let the child install its SIGTERM handler
    began = time.monotonic()
    deleted = kube.core.delete_namespaced_pod("stubborn", "default")
    assert deleted.metadata.deletion_timestamp is not None  # graceful: still there
    assert deleted.metadata.deletion_grace_period_seconds == 2
    wait_for(lambda: not kube.pods("app=stubborn"), what="pod removed")
    took = time.monotonic() - began
    assert 1.8 <= took < 6, took
    assert proc.returncode == -9  # it ignored TERM, so KILL ended it

    kube.core.create_namespaced_pod(
        "default", bare_pod("polite", ["sleep", "60"], terminationGracePeriodSeconds=30)
    )
    phase_of(kube, "polite", "Running")
    began = time.monotonic()
    kube.core.delete_namespaced_pod("polite", "default")
    wait_for(lambda: not kube.pods("app=polite"), what="pod removed")
    assert time.monotonic() - began < 3  # TERM was enough


def test_pod_ip_serves_a_simulated_ollama_and_gates_readiness(kube: Kube, sim_dir: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "gpuherd",
        "sim",
        "app",
        "ollama",
        "llama3=2GiB",
        "--host",
        "$(POD_IP)",
        "--port",
        "11434",
    ]
    kube.core.create_namespaced_pod(
        "default",
        bare_pod(
            "ollama",
            command,
            restartPolicy="Always",
            nodeName="k3s-cp-01",
            container={
                "ports": [{"name": "http", "containerPort": 11434}],
                "readinessProbe": {
                    "httpGet": {"path": "/api/ps", "port": "http"},
                    "periodSeconds": 1,
                },
            },
        ),
    )
    pod = phase_of(kube, "ollama", "Running")
    ready = wait_for(
        lambda: [
            p
            for p in [kube.core.read_namespaced_pod("ollama", "default")]
            if p.status.container_statuses[0].ready
        ],
        what="ready",
    )[0]
    conditions = {c.type: c.status for c in ready.status.conditions}
    assert conditions["Ready"] == "True"
    assert conditions["ContainersReady"] == "True"
    reply = httpx.get(f"http://{pod.status.pod_ip}:11434/api/ps")
    assert reply.status_code == 200
    with socket.socket() as other:  # only the pod's own address answers
        assert other.connect_ex(("127.0.0.1", 11434)) != 0
    # attribution: the process holding the VRAM names this pod
    with SimHost(sim_dir) as host:
        holders = [p for p in host.snapshot().processes if p.used_bytes]
    assert holders
    origin = read_origin(holders[0].pid, kube.cluster.directory)
    assert origin.pod_uid == pod.metadata.uid
    assert origin.runtime == "containerd"
    assert origin.qos == "BestEffort"


def test_a_crashing_service_restarts_with_backoff(kube: Kube) -> None:
    kube.core.create_namespaced_pod(
        "default",
        bare_pod("crash", [sys.executable, "-c", "raise SystemExit(1)"], restartPolicy="Always"),
    )

    def restarted() -> Any:
        pod = kube.core.read_namespaced_pod("crash", "default")
        status = (pod.status.container_statuses or [None])[0]
        return pod if status is not None and status.restart_count >= 1 else None

    pod = wait_for(restarted, what="a restart")
    assert pod.status.phase == "Running"
    last = pod.status.container_statuses[0].last_state.terminated
    assert last.exit_code == 1


def test_a_pods_child_processes_are_attributed_to_it(kube: Kube, sim_dir: Path) -> None:
    spawn = (
        "import subprocess, sys; subprocess.run([sys.executable, '-m', 'gpuherd', 'sim', "
        "'hold', '--gpu', '0', '--vram', '1GiB', '--name', 'worker'])"
    )
    kube.core.create_namespaced_pod(
        "default",
        bare_pod(
            "parent",
            [sys.executable, "-c", spawn],
            nodeName="k3s-cp-01",
            container={"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}},
        ),
    )
    pod = phase_of(kube, "parent", "Running")
    assert pod.status.qos_class == "Guaranteed"

    def holder() -> int | None:
        with SimHost(sim_dir) as host:
            return next((p.pid for p in host.snapshot().processes if p.name == "worker"), None)

    pid = wait_for(holder, what="the child holding VRAM")
    origin = wait_for(
        lambda: [o for o in [read_origin(pid, kube.cluster.directory)] if o.pod_uid],
        what="the child's cgroup file",
    )[0]
    assert origin.pod_uid == pod.metadata.uid
    assert origin.qos == "Guaranteed"


def test_logs_tail_follow_and_container_choice(kube: Kube) -> None:
    ticker = "import time\nfor i in range(5):\n    print(i, flush=True)\n    time.sleep(0.2)"
    body = bare_pod("ticker", [sys.executable, "-c", ticker])
    body["spec"]["containers"].append({"name": "side", "image": "x", "command": ["true"]})
    kube.core.create_namespaced_pod("default", body)
    phase_of(kube, "ticker", "Running")
    followed = httpx.get(
        kube.cluster.url + "/api/v1/namespaces/default/pods/ticker/log",
        params={"container": "main", "follow": "true"},
        timeout=20,
    )
    assert followed.text == "0\n1\n2\n3\n4\n"  # it ended when the container did
    tail = kube.core.read_namespaced_pod_log("ticker", "default", container="main", tail_lines=2)
    assert tail == "3\n4\n"
    reply = httpx.get(kube.cluster.url + "/api/v1/namespaces/default/pods/ticker/log")
    assert reply.status_code == 400
    assert reply.json()["message"] == (
        "a container name must be specified for pod ticker, choose one of: [main side]"
    )


def test_pods_find_the_api_server_through_kubeconfig(kube: Kube) -> None:
    kube.core.create_namespaced_pod("default", bare_pod("env2", [sys.executable, "-c", ENV_DUMP]))
    phase_of(kube, "env2", "Succeeded")
    env = json.loads(kube.core.read_namespaced_pod_log("env2", "default"))
    assert env["KUBECONFIG"] == str(kube.cluster.kubeconfig)
