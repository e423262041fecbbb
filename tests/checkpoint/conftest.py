"""Checkpoint fixtures: a simulated host with two GPUs of one chip and one of another, the
`gpuherd checkpoint` command as a subprocess, and holders that map files (NCCL, IPC)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gpuherd.gpu.sim import SimHost
from tests.conftest import GIB, gpuherd_argv

HERE = Path(__file__).resolve().parent
CHIP = "NVIDIA A100-SXM4-40GB"


@pytest.fixture
def sim_dir(tmp_path: Path) -> Path:
    """GPU 0 and 1: the same 16 GiB chip; GPU 2: a 24 GiB L4."""
    directory = tmp_path / "sim"
    SimHost.init(directory, [(CHIP, 16 * GIB), (CHIP, 16 * GIB), ("NVIDIA L4", 24 * GIB)]).close()
    return directory


Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(sim_dir: Path, tmp_path: Path) -> Cli:
    """Run `gpuherd checkpoint ARGS --backend sim` against the fixture's host and state dir."""

    def run(*args: str, backend: str = "sim") -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "GPUHERD_SIM_DIR": str(sim_dir),
            "XDG_STATE_HOME": str(tmp_path / "state"),
            "GPUHERD_BACKEND": backend,
        }
        return subprocess.run(
            gpuherd_argv("checkpoint", *args),
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=60,
        )

    return run


def as_json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(result.stdout)
    return data


MappedFactory = Callable[..., subprocess.Popen[str]]


@pytest.fixture
def mapped(sim_dir: Path) -> Iterator[MappedFactory]:
    """Start holders that map the given files; each is ended after the test."""
    started: list[subprocess.Popen[str]] = []

    def start(
        *,
        vram: int,
        gpus: tuple[int, ...] = (0,),
        maps: tuple[Path, ...] = (),
        on: Path | None = None,
    ) -> subprocess.Popen[str]:
        argv = [sys.executable, str(HERE / "mapped_holder.py"), "--sim-dir", str(on or sim_dir)]
        argv += ["--vram", str(vram)]
        for gpu in gpus:
            argv += ["--gpu", str(gpu)]
        for path in maps:
            argv += ["--map", str(path)]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("holding"), proc.stderr.read() if proc.stderr else line
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
