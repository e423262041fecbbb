"""`gpuherd sim ...`: create simulated GPUs and run workloads on them (no NVIDIA GPU needed)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gpuherd.cli.common import Exit, SimDirOpt, fail, stdout
from gpuherd.cli.simcluster import app as cluster_app
from gpuherd.units import UnitError, format_bytes, parse_bytes, parse_duration

if TYPE_CHECKING:
    from gpuherd.gpu.sim import SimHost

app = typer.Typer(
    name="sim",
    help="Simulated GPUs whose memory is held by real processes: run gpuherd without a GPU.",
    no_args_is_help=True,
)
app.add_typer(cluster_app, name="cluster")


def _parse_gpu(text: str) -> tuple[str, int]:
    name, sep, size = text.rpartition(":")
    if not sep or not name.strip():
        fail(f'--gpu {text!r}: expected NAME:SIZE, e.g. "NVIDIA GeForce RTX 3080 Ti:12GiB"')
    try:
        total = parse_bytes(size)
    except UnitError as exc:
        fail(f"--gpu {text!r}: {exc}")
    if total <= 0:
        fail(f"--gpu {text!r}: memory must be above 0")
    return name.strip(), total


def _host(sim_dir: Path | None) -> SimHost:
    from gpuherd.gpu.base import BackendUnavailable
    from gpuherd.gpu.sim import SimHost, default_sim_dir

    try:
        return SimHost(sim_dir or default_sim_dir())
    except BackendUnavailable as exc:
        fail(exc.message, hint=exc.hint, code=Exit.NO_GPU)


@app.command()
def init(
    gpu: Annotated[
        list[str],
        typer.Option(
            "--gpu",
            "-g",
            help='A device as NAME:SIZE, e.g. "NVIDIA GeForce RTX 3080 '
            'Ti:12GiB"; repeat for more. Indices follow the order given.',
        ),
    ],
    sim_dir: SimDirOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing simulated host.")
    ] = False,
) -> None:
    """Create simulated GPUs in the sim directory."""
    from gpuherd.gpu.sim import SimError, SimHost, default_sim_dir

    directory = sim_dir or default_sim_dir()
    devices = [_parse_gpu(g) for g in gpu]
    try:
        SimHost.init(directory, devices, force=force).close()
    except SimError as exc:
        fail(str(exc))
    for i, (name, total) in enumerate(devices):
        stdout.print(f"GPU {i}: {name} ({format_bytes(total)})", markup=False)
    stdout.print(f"simulated host ready in {directory}", markup=False)


@app.command()
def hold(
    gpu: Annotated[int, typer.Option("--gpu", "-g", help="Device index to allocate on.")] = 0,
    vram: Annotated[str, typer.Option("--vram", help="How much to allocate, e.g. 4GiB.")] = "1GiB",
    name: Annotated[
        str | None, typer.Option("--name", help="Process name shown by `gpuherd gpus`.")
    ] = None,
    ramp: Annotated[
        str, typer.Option("--ramp", help="Reach --vram gradually over this time, e.g. 2s.")
    ] = "0s",
    hold_for: Annotated[
        str | None,
        typer.Option("--for", help="Exit 0 after this long (default: hold until SIGTERM/SIGINT)."),
    ] = None,
    util: Annotated[
        int, typer.Option("--util", min=0, max=100, help="GPU utilization % to report.")
    ] = 0,
    pid_file: Annotated[
        Path | None, typer.Option("--pid-file", help="Write this process's pid here.")
    ] = None,
    sim_dir: SimDirOpt = None,
) -> None:
    """Allocate simulated VRAM and hold it; exits 1 with 'out of memory' when it does not fit."""
    from gpuherd.gpu.sim import default_sim_dir
    from gpuherd.gpu.simhold import HoldRequest
    from gpuherd.gpu.simhold import hold as run_holder

    try:
        request = HoldRequest(
            sim_dir=sim_dir or default_sim_dir(),
            gpu=gpu,
            vram=parse_bytes(vram),
            name=name,
            ramp=parse_duration(ramp),
            hold_for=None if hold_for is None else parse_duration(hold_for),
            util=util,
            pid_file=pid_file,
        )
    except UnitError as exc:
        fail(str(exc))
    _host(request.sim_dir).close()  # a clear error before allocating if the host is missing
    raise typer.Exit(run_holder(request))


class Action(StrEnum):
    lock = "lock"
    checkpoint = "checkpoint"
    restore = "restore"
    unlock = "unlock"


@app.command()
def checkpoint(
    pid: Annotated[int, typer.Option("--pid", "-p", help="Process to act on.")],
    action: Annotated[
        Action | None, typer.Option("--action", help="One state-machine step.")
    ] = None,
    toggle: Annotated[
        bool, typer.Option("--toggle", help="running -> checkpointed, or checkpointed -> running.")
    ] = False,
    get_state: Annotated[
        bool, typer.Option("--get-state", help="Print the process's state.")
    ] = False,
    sim_dir: SimDirOpt = None,
) -> None:
    """cuda-checkpoint for simulated processes: same flags, same states, same failures."""
    from gpuherd.gpu.sim import SimError

    if sum((action is not None, toggle, get_state)) != 1:
        fail("give exactly one of --action, --toggle, --get-state")
    host = _host(sim_dir)
    try:
        if get_state:
            stdout.print(host.state_of(pid), markup=False)
            return
        if toggle:
            if host.state_of(pid) == "checkpointed":
                host.restore(pid)
                host.unlock(pid)
            else:
                host.lock(pid)
                host.checkpoint(pid)
        else:
            assert action is not None
            {
                Action.lock: host.lock,
                Action.checkpoint: host.checkpoint,
                Action.restore: host.restore,
                Action.unlock: host.unlock,
            }[action](pid)
        stdout.print(host.state_of(pid), markup=False)
    except SimError as exc:
        fail(str(exc), code=Exit.FAILED)
    finally:
        host.close()


class AppKind(StrEnum):
    ollama = "ollama"
    vllm = "vllm"
    comfyui = "comfyui"
    a1111 = "a1111"
    llamacpp = "llamacpp"


@app.command()
def util(
    pid: Annotated[int, typer.Argument(help="A process holding simulated VRAM.")],
    percent: Annotated[
        int, typer.Argument(min=0, max=100, help="GPU utilization % it reports from now on.")
    ],
    gpu: Annotated[int, typer.Option("--gpu", help="Simulated GPU index.")] = 0,
    sim_dir: SimDirOpt = None,
) -> None:
    """Make a simulated process busy (a server taking a request) or idle (0): what NVML's
    per-process utilization would show. The broker's headroom guard never releases a busy one."""
    from gpuherd.gpu.sim import SimError

    host = _host(sim_dir)
    try:
        host.set_util(pid=pid, gpu=gpu, util=percent)
    except SimError as exc:
        fail(str(exc), hint="gpuherd gpus --backend sim lists the processes holding memory")
    finally:
        host.close()
    stdout.print(f"process {pid} on GPU {gpu}: {percent}% utilization", markup=False)


@app.command(name="app")
def sim_app(
    kind: Annotated[AppKind, typer.Argument(help="Which application to imitate.")],
    models: Annotated[str, typer.Argument(help="Loaded models as NAME=SIZE[,NAME=SIZE].")],
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1 (0: any free).")] = 0,
    host: Annotated[
        str,
        typer.Option("--host", help="Loopback address to listen on, e.g. a simulated pod's IP."),
    ] = "127.0.0.1",
    sim_dir: SimDirOpt = None,
) -> None:
    """A simulated Ollama/vLLM/ComfyUI/A1111 server holding sim VRAM for its models."""
    from gpuherd.gpu.sim import default_sim_dir
    from gpuherd.gpu.simapps import parse_models, serve_app

    try:
        parsed = parse_models(models)
    except (UnitError, ValueError) as exc:
        fail(f"models {models!r}: {exc}", hint="e.g. llama3=4GiB,qwen=2GiB")
    directory = sim_dir or default_sim_dir()
    _host(directory).close()
    serve_app(kind.value, directory, parsed, port, host=host)
