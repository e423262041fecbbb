"""The cuda-checkpoint engine against a fake binary on PATH that speaks the real command line
over the simulated driver; and the engine choice of `open_engine`."""

from __future__ import annotations

import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpuherd.checkpoint import (
    IllegalState,
    LockTimeout,
    NoCheckpointApi,
    NotCudaProcess,
    ProcessState,
    open_engine,
    resume,
    suspend,
)
from gpuherd.checkpoint.tool import ToolEngine, find_tool
from gpuherd.gpu.sim import SimBackend
from tests.conftest import GIB, HolderFactory

HERE = Path(__file__).resolve().parent


@pytest.fixture
def tool_path(tmp_path: Path, sim_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `cuda-checkpoint` on PATH (and nothing else there) that acts on the simulated host."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "cuda-checkpoint"
    tool.write_text(
        f'#!/bin/sh\nexec "{sys.executable}" "{HERE / "fake_cuda_checkpoint.py"}" "$@"\n'
    )
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("GPUHERD_SIM_DIR", str(sim_dir))
    monkeypatch.delenv("FAKE_CUDA_CHECKPOINT", raising=False)
    return tool


@pytest.fixture
def gpus(sim_dir: Path) -> Iterator[SimBackend]:
    backend = SimBackend(sim_dir)
    yield backend
    backend.close()


def test_round_trip_through_the_binary(
    tool_path: Path, gpus: SimBackend, holder: HolderFactory
) -> None:
    proc = holder("--vram", "4GiB")
    engine = ToolEngine()
    assert engine.binary == tool_path
    assert engine.state(proc.pid) is ProcessState.RUNNING
    done = suspend(engine, gpus, pid=proc.pid, lock_timeout=1)
    assert done.bytes == 4 * GIB
    assert done.engine == "cuda-checkpoint"
    assert engine.state(proc.pid) is ProcessState.CHECKPOINTED
    assert gpus.snapshot().device(0).memory_used == 0  # type: ignore[union-attr]
    back = resume(engine, gpus, pid=proc.pid, record=done)
    assert back.verified
    assert engine.state(proc.pid) is ProcessState.RUNNING


def test_the_binary_cannot_remap(tool_path: Path, gpus: SimBackend, holder: HolderFactory) -> None:
    proc = holder("--vram", "1GiB")
    engine = ToolEngine()
    done = suspend(engine, gpus, pid=proc.pid)
    with pytest.raises(NoCheckpointApi, match="cannot restore onto another GPU"):
        resume(engine, gpus, pid=proc.pid, record=done, onto=1)
    assert engine.state(proc.pid) is ProcessState.CHECKPOINTED
    resume(engine, gpus, pid=proc.pid, record=done)


def test_error_texts_map_to_typed_errors(
    tool_path: Path, holder: HolderFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc = holder("--vram", "1GiB")
    engine = ToolEngine()
    with pytest.raises(IllegalState, match="Could not unlock on process ID"):
        engine.unlock(proc.pid)
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as plain:
        try:
            with pytest.raises(NotCudaProcess, match='"invalid argument"'):
                engine.state(plain.pid)
        finally:
            plain.kill()
    monkeypatch.setenv("FAKE_CUDA_CHECKPOINT", "busy")
    with pytest.raises(LockTimeout, match="left running"):
        engine.lock(proc.pid, timeout=0.2)
    assert ToolEngine().state(proc.pid) is ProcessState.RUNNING
    monkeypatch.setenv("FAKE_CUDA_CHECKPOINT", "no-api")
    with pytest.raises(NoCheckpointApi, match="no checkpoint API"):
        engine.state(proc.pid)


def test_not_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(NoCheckpointApi, match="cuda-checkpoint is not on PATH"):
        find_tool()


def test_open_engine_falls_back_to_the_binary(
    tool_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "cuda", None)  # cuda-bindings not installed
    assert open_engine("nvml").name == "cuda-checkpoint"


def test_open_engine_with_neither_says_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "cuda", None)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(
        NoCheckpointApi,
        match=r"cuda-bindings package is not importable.*cuda-checkpoint is not on PATH",
    ):
        open_engine("nvml")


def test_open_engine_sim_without_a_host(tmp_path: Path) -> None:
    with pytest.raises(NoCheckpointApi, match="no simulated GPUs"):
        open_engine("sim", sim_dir=tmp_path / "none")
