"""What every command shares: exit codes, error output, and the --backend/--sim-dir/-c options."""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from gpuherd.gpu.base import BackendUnavailable, GpuBackend
from gpuherd.gpu.select import BackendName, open_backend

if TYPE_CHECKING:
    from gpuherd.spec import Config


class Exit(IntEnum):
    """Exit codes, the same for every command (documented in `gpuherd --help`)."""

    OK = 0
    FAILED = 1  # the command ran and the answer is "no" (findings, a failed job, OOM)
    USAGE = 2  # bad arguments or bad input files
    NO_GPU = 3  # no GPU backend could be opened here
    NO_BROKER = 4  # no broker answers on the socket or URL
    NO_CLUSTER = 4  # the Kubernetes API server cannot be reached or read (--cluster)


stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, *, hint: str | None = None, code: Exit = Exit.USAGE) -> NoReturn:
    # Escaped: a message or hint may hold brackets ("pip install 'gpuherd[kubernetes]'").
    stderr.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False)
    if hint:
        stderr.print(f"[dim]hint:[/] {escape(hint)}", markup=True)
    raise typer.Exit(int(code))


BackendOpt = Annotated[
    BackendName,
    typer.Option(
        "--backend",
        "-b",
        envvar="GPUHERD_BACKEND",
        help="Where GPU facts come from: nvml (real NVIDIA GPUs), sim (simulated GPUs), or auto "
        "(NVML; fails with a hint instead of silently simulating).",
        case_sensitive=False,
    ),
]
SimDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--sim-dir",
        envvar="GPUHERD_SIM_DIR",
        help="Directory of the simulated host (default: $XDG_STATE_HOME/gpuherd/sim).",
        show_default=False,
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar="GPUHERD_CONFIG",
        help="gpuherd.yaml with GPUs, tenants and jobs.",
        show_default=False,
    ),
]


def load_config_or_exit(path: Path, *, methods: Mapping[str, str] | None = None) -> Config:
    """`methods`: preempt method kinds that cannot run here, and why (validate and serve)."""
    from gpuherd.spec import SpecError, load_config  # pydantic: only for commands that need it

    try:
        return load_config(path, unavailable=methods)
    except SpecError as exc:
        for issue in exc.issues:
            stderr.print(str(issue), markup=False)
        count = len(exc.issues)
        stderr.print(
            f"{path}: {count} problem{'s' if count != 1 else ''}; nothing was changed", markup=False
        )
        raise typer.Exit(int(Exit.USAGE)) from None


def open_backend_or_exit(name: BackendName, sim_dir: Path | None) -> GpuBackend:
    try:
        return open_backend(name, sim_dir=sim_dir)
    except BackendUnavailable as exc:
        fail(exc.message, hint=exc.hint, code=Exit.NO_GPU)


def start_batch() -> None:
    """For one-shot commands that build large, acyclic data (lint, plan): the cyclic collector
    would walk all of it again and again for nothing."""
    import gc

    gc.disable()


def finish_batch(code: int) -> NoReturn:
    """Leave without freeing every object one by one: output is flushed, nothing else is owed."""
    import os
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def write_out(text: str) -> None:
    """Machine-readable output (JSON, SARIF): straight to stdout, no rich rendering on the way."""
    import sys

    sys.stdout.write(text)
    sys.stdout.write("\n")
