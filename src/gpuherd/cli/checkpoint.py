"""`gpuherd checkpoint state|suspend|resume PID`: move a CUDA process's GPU memory to host RAM
and back, in place (the pid stays the same, the process stays alive)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn

import typer
from rich.markup import escape

from gpuherd.cli.common import BackendOpt, Exit, SimDirOpt, fail, stderr, stdout, write_out
from gpuherd.units import UnitError, format_bytes, format_duration, parse_duration

if TYPE_CHECKING:
    from gpuherd.checkpoint import CheckpointEngine, CheckpointError
    from gpuherd.gpu.base import GpuBackend

app = typer.Typer(
    name="checkpoint",
    help=(
        "Suspend a CUDA process's GPU memory to host RAM and resume it in place, through the "
        "driver's checkpoint API (cuda-bindings or the cuda-checkpoint binary; --backend sim for "
        "simulated GPUs). The process keeps its pid and state; its CUDA calls block meanwhile.\n\n"
        "Exit codes: 0 done; 1 refused or failed (the reason is printed; a refused resume leaves "
        "the process checkpointed); 2 bad arguments; 3 no GPU or no checkpoint API here."
    ),
    no_args_is_help=True,
)

PidArg = Annotated[int, typer.Argument(help="Host pid of the CUDA process.", min=1)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]
StateOpt = Annotated[
    Path | None,
    typer.Option(
        "--state",
        help="Where suspend records live, in checkpoints/ (default: $XDG_STATE_HOME/gpuherd).",
        show_default=False,
    ),
]


def _state_dir(state: Path | None) -> Path:
    if state is not None:
        return state
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "gpuherd"


def _duration(flag: str, text: str) -> float:
    try:
        return parse_duration(text)
    except UnitError as exc:
        fail(f"{flag} {text!r}: {exc}")


def _open(backend: str, sim_dir: Path | None) -> tuple[CheckpointEngine, GpuBackend]:
    from gpuherd.checkpoint import NoCheckpointApi, open_engine
    from gpuherd.cli.common import open_backend_or_exit

    kind: Literal["nvml", "sim"] = "sim" if backend == "sim" else "nvml"
    try:
        engine = open_engine(kind, sim_dir=sim_dir)
    except NoCheckpointApi as exc:
        fail(exc.message, hint=exc.hint, code=Exit.NO_GPU)
    return engine, open_backend_or_exit(kind, sim_dir)


def _fail(exc: CheckpointError, as_json: bool) -> NoReturn:
    from gpuherd.checkpoint import NoCheckpointApi, NotEnoughVram, Refused

    code = Exit.NO_GPU if isinstance(exc, NoCheckpointApi) else Exit.FAILED
    if as_json:
        body: dict[str, Any] = {"ok": False, "error": type(exc).__name__, "message": str(exc)}
        if isinstance(exc, Refused):
            body["reasons"] = exc.reasons
        if isinstance(exc, NotEnoughVram):
            body.update(gpu=exc.gpu, need=exc.need, free=exc.free, margin=exc.margin)
        write_out(json.dumps(body))
        raise typer.Exit(int(code))
    if isinstance(exc, Refused) and len(exc.reasons) > 1:
        stderr.print(f"[bold red]error:[/] refusing to act on process {exc.pid}:")
        for reason in exc.reasons:
            stderr.print(f"  - {reason}", markup=False)
        raise typer.Exit(int(code))
    hint = getattr(exc, "hint", None)
    fail(str(exc), hint=hint, code=code)


def _rate(gbps: float | None) -> str:
    return "-" if gbps is None else f"{gbps:.1f} GB/s"


def _notes(notes: tuple[str, ...]) -> None:
    for note in notes:
        stderr.print(f"[yellow]note:[/] {escape(note)}")


@app.command()
def state(
    pid: PidArg,
    as_json: JsonOpt = False,
    backend: BackendOpt = "auto",
    sim_dir: SimDirOpt = None,
    state_dir: StateOpt = None,
) -> None:
    """Print the process's checkpoint state: running, locked, checkpointed or failed."""
    from gpuherd.checkpoint import CheckpointError, restore_seconds
    from gpuherd.checkpoint.records import load

    engine, _gpus = _open(backend, sim_dir)
    try:
        current = engine.state(pid)
    except CheckpointError as exc:
        _fail(exc, as_json)
    record = load(_state_dir(state_dir), pid)
    estimate = restore_seconds(record.bytes) if record else None
    if as_json:
        write_out(
            json.dumps(
                {
                    "ok": True,
                    "pid": pid,
                    "state": current.value,
                    "engine": engine.name,
                    "suspended": record.to_json() if record else None,
                    "restore_estimate_s": estimate,
                }
            )
        )
        return
    stdout.print(f"process {pid}: {current.value}", markup=False)
    if record is not None and estimate is not None:
        stdout.print(
            f"  {format_bytes(record.bytes)} of GPU {record.gpu_index} ({record.gpu_name}) in "
            f"host RAM; restore takes about {format_duration(estimate)}",
            markup=False,
        )


@app.command()
def suspend(
    pid: PidArg,
    lock_timeout: Annotated[
        str,
        typer.Option(
            "--lock-timeout",
            help="How long the lock may wait for the process's running CUDA work; when it "
            "expires the process is left running and nothing is moved.",
        ),
    ] = "10s",
    as_json: JsonOpt = False,
    backend: BackendOpt = "auto",
    sim_dir: SimDirOpt = None,
    state_dir: StateOpt = None,
) -> None:
    """Lock the process and move its GPU memory to host RAM; the GPU memory is freed.

    Refuses (exit 1, nothing done) processes that load NCCL, use more than one GPU, are not CUDA
    processes, share GPU memory by IPC, are stopped, or whose memory does not fit in host RAM.
    """
    from gpuherd.checkpoint import CheckpointError
    from gpuherd.checkpoint import suspend as do_suspend
    from gpuherd.checkpoint.records import save

    timeout = _duration("--lock-timeout", lock_timeout)
    engine, gpus = _open(backend, sim_dir)
    try:
        done = do_suspend(engine, gpus, pid=pid, lock_timeout=timeout)
    except CheckpointError as exc:
        _fail(exc, as_json)
    finally:
        gpus.close()
    try:
        save(_state_dir(state_dir), done)
    except OSError as exc:
        # The process is suspended either way; without the record, resume cannot check the fit.
        stderr.print(
            f"[yellow]warning:[/] could not write the suspend record ({escape(str(exc))}); "
            "`resume` will refuse on a real GPU until it can tell how much memory must fit"
        )
    if as_json:
        write_out(json.dumps({"ok": True, **done.to_json()}))
        return
    stdout.print(
        f"suspended process {pid}: {format_bytes(done.bytes)} moved from GPU {done.gpu_index} "
        f"({done.gpu_name}) to host RAM in {done.checkpoint_s:.2f}s ({_rate(done.gbps)}); "
        f"lock took {done.lock_s:.2f}s, GPU {done.gpu_index} freed "
        f"{format_bytes(done.freed_bytes)}",
        markup=False,
    )
    if not done.verified:
        stderr.print(f"[yellow]warning:[/] process {pid} still shows a context on the GPU")
    _notes(done.notes)


@app.command()
def resume(
    pid: PidArg,
    wait: Annotated[
        str,
        typer.Option(
            "--wait",
            help="Wait up to this long for enough free VRAM (e.g. 5m); without it, exit 1 at "
            "once when the memory does not fit. The process stays checkpointed either way.",
        ),
    ] = "0s",
    onto: Annotated[
        int | None,
        typer.Option(
            "--onto",
            help="Restore onto this GPU index instead (same chip type; needs cuda-bindings "
            ">= 13.0.2 or --backend sim).",
            min=0,
        ),
    ] = None,
    as_json: JsonOpt = False,
    backend: BackendOpt = "auto",
    sim_dir: SimDirOpt = None,
    state_dir: StateOpt = None,
) -> None:
    """Move the process's memory back to the GPU once it fits, then let it run again."""
    from gpuherd.checkpoint import CheckpointError
    from gpuherd.checkpoint import resume as do_resume
    from gpuherd.checkpoint.records import forget, load

    seconds = _duration("--wait", wait)
    directory = _state_dir(state_dir)
    engine, gpus = _open(backend, sim_dir)
    poll = 0.2 if engine.name == "sim" else 1.0
    try:
        done = do_resume(
            engine, gpus, pid=pid, record=load(directory, pid), wait=seconds, onto=onto, poll=poll
        )
    except CheckpointError as exc:
        _fail(exc, as_json)
    finally:
        gpus.close()
    forget(directory, pid)
    if as_json:
        write_out(json.dumps({"ok": True, **done.to_json()}))
        return
    if done.already_running:
        stdout.print(f"process {pid} is already running; nothing to resume", markup=False)
        return
    if done.bytes == 0:
        stdout.print(f"process {pid} was restored but locked; unlocked it", markup=False)
        return
    moved = f" (moved from GPU {done.moved_from})" if done.moved_from is not None else ""
    stdout.print(
        f"resumed process {pid} on GPU {done.gpu_index}{moved}: {format_bytes(done.bytes)} back "
        f"in {done.restore_s:.2f}s ({_rate(done.gbps)}); waited {done.waited_s:.1f}s for room",
        markup=False,
    )
    if not done.verified:
        stderr.print(f"[yellow]warning:[/] process {pid} does not show on GPU {done.gpu_index} yet")
