"""`gpuherd sim cluster up`: a simulated Kubernetes cluster on simulated GPUs (tests, demos)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from gpuherd.cli.common import Exit, SimDirOpt, fail, stdout

app = typer.Typer(
    name="cluster",
    help="A simulated Kubernetes API server with nodes, controllers and kubelets whose pods are "
    "local processes on simulated GPUs. The official client and kubectl talk to it.",
    no_args_is_help=True,
)


@app.command()
def up(
    directory: Annotated[
        Path,
        typer.Option("--dir", help="Where the kubeconfig, pod logs and pod cgroup files go."),
    ],
    node: Annotated[
        list[str],
        typer.Option(
            "--node",
            help="A node as NAME[:GPU_INDEX[,GPU_INDEX]], e.g. k3s-cp-01:0; repeat for more. "
            "The indices are simulated GPUs of --sim-dir; each GPU belongs to one node.",
        ),
    ],
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1 (0: any free).")] = 0,
    time_slicing: Annotated[
        int,
        typer.Option(
            "--time-slicing",
            min=1,
            help="Replicas per GPU, as the device plugin's time-slicing: capacity "
            "nvidia.com/gpu = GPUs x N (1: no sharing).",
        ),
    ] = 1,
    history: Annotated[
        int,
        typer.Option("--history", min=1, help="Watch events kept; older versions get 410."),
    ] = 10_000,
    bookmark_interval: Annotated[
        float,
        typer.Option("--bookmark-interval", help="Seconds between BOOKMARK events in watches."),
    ] = 10.0,
    sim_dir: SimDirOpt = None,
) -> None:
    """Serve on 127.0.0.1 until SIGTERM/SIGINT; prints `listening URL` and writes DIR/kubeconfig.

    POST /simcluster/v1/expire-history forgets the watch history at once (watches from older
    versions then get 410 Expired). Pod processes see POD_IP, POD_NAME, NODE_NAME,
    GPUHERD_POD_UID, NVIDIA_VISIBLE_DEVICES and CUDA_VISIBLE_DEVICES, and DIR/proc/PID/cgroup
    names their pod for `gpuherd.gpu.attribution` (read with root=DIR).
    """
    import importlib.util

    from gpuherd.gpu.sim import default_sim_dir

    for module in ("kubernetes_validate", "jsonschema"):  # it checks bodies as a server does
        if importlib.util.find_spec(module) is None:
            fail(
                f"the simulated cluster needs the {module} package",
                hint="pip install 'gpuherd[simcluster]'",
            )
    from gpuherd.simcluster.cluster import ClusterError, NodeSpec, SimCluster

    try:
        nodes = [NodeSpec.parse(n, replicas=time_slicing) for n in node]
    except ValueError as exc:
        fail(str(exc))
    needs_gpus = any(n.gpus for n in nodes)
    try:
        cluster = SimCluster(
            directory=directory,
            nodes=nodes,
            sim_dir=(sim_dir or default_sim_dir()) if needs_gpus else sim_dir,
            port=port,
            history=history,
            bookmark_interval=bookmark_interval,
        )
        cluster.start()
    except ClusterError as exc:
        fail(
            str(exc),
            hint='create GPUs with: gpuherd sim init --gpu "NVIDIA GeForce RTX 3080 Ti:12GiB"',
            code=Exit.NO_GPU if "simulated GPU" in str(exc) else Exit.USAGE,
        )
    except OSError as exc:
        fail(f"cannot serve on 127.0.0.1:{port}: {exc.strerror}")
    stop = threading.Event()

    def on_signal(*_: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stdout.print(f"listening {cluster.url}", markup=False)
    stdout.print(f"kubeconfig {cluster.kubeconfig}", markup=False)
    stdout.file.flush()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        cluster.stop()
