"""The cuda.bindings engine against a fake `cuda.bindings.driver` that speaks the real interface
over the simulated driver: feature detection per release, error mapping, and whole
suspend/resume runs on real holder processes."""

from __future__ import annotations

import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpuherd.checkpoint import (
    EngineFailed,
    IllegalState,
    LockTimeout,
    NoCheckpointApi,
    NotCudaProcess,
    ProcessState,
    resume,
    suspend,
)
from gpuherd.checkpoint.bindings import BindingsEngine, load_driver
from gpuherd.gpu.sim import SimBackend
from tests.checkpoint import fake_cuda_driver as fake
from tests.conftest import GIB, HolderFactory


@pytest.fixture
def driver(sim_dir: Path, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """The fake, installed where `from cuda.bindings import driver` finds it."""
    monkeypatch.setattr(fake, "SIM_DIR", sim_dir)
    monkeypatch.setattr(fake, "BUSY", set())
    monkeypatch.setattr(fake, "NO_API", False)
    monkeypatch.setattr(fake, "STATE_OVERRIDE", {})
    monkeypatch.setattr(fake, "calls", [])
    cuda = types.ModuleType("cuda")
    bindings = types.ModuleType("cuda.bindings")
    bindings.__version__ = fake.__version__  # type: ignore[attr-defined]
    bindings.driver = fake  # type: ignore[attr-defined]
    cuda.bindings = bindings  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cuda", cuda)
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.driver", fake)
    return fake


@pytest.fixture
def gpus(sim_dir: Path) -> Iterator[SimBackend]:
    backend = SimBackend(sim_dir)
    yield backend
    backend.close()


def test_whole_round_trip_through_the_driver_api(
    driver: types.ModuleType, gpus: SimBackend, holder: HolderFactory
) -> None:
    proc = holder("--vram", "5GiB")
    engine = BindingsEngine()  # imports cuda.bindings.driver: the fake
    assert engine.can_remap
    done = suspend(engine, gpus, pid=proc.pid, lock_timeout=2.5)
    assert done.bytes == 5 * GIB
    assert done.verified
    assert engine.state(proc.pid) is ProcessState.CHECKPOINTED
    assert ("cuCheckpointProcessLock", proc.pid) in fake.calls
    back = resume(engine, gpus, pid=proc.pid, record=done)
    assert back.verified
    assert engine.state(proc.pid) is ProcessState.RUNNING
    assert proc.poll() is None


def test_restore_onto_another_gpu_sends_gpu_uuid_pairs(
    driver: types.ModuleType, gpus: SimBackend, holder: HolderFactory
) -> None:
    proc = holder("--vram", "5GiB", "--gpu", "1")
    engine = BindingsEngine(fake)
    done = suspend(engine, gpus, pid=proc.pid)
    back = resume(engine, gpus, pid=proc.pid, record=done, onto=0)
    assert (back.gpu_index, back.moved_from) == (0, 1)
    snap = gpus.snapshot()
    assert [p.gpu_index for p in snap.processes if p.pid == proc.pid] == [0]


def test_lock_timeout_leaves_the_process_running(
    driver: types.ModuleType, gpus: SimBackend, holder: HolderFactory
) -> None:
    proc = holder("--vram", "2GiB")
    fake.BUSY.add(proc.pid)
    engine = BindingsEngine(fake)
    with pytest.raises(LockTimeout, match=r"within 0\.5s; it was left running"):
        suspend(engine, gpus, pid=proc.pid, lock_timeout=0.5)
    assert engine.state(proc.pid) is ProcessState.RUNNING
    assert gpus.snapshot().device(0).memory_used == 2 * GIB  # type: ignore[union-attr]


def test_a_pid_without_a_cuda_context(driver: types.ModuleType) -> None:
    engine = BindingsEngine(fake)
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as plain:
        try:
            with pytest.raises(NotCudaProcess, match="invalid argument"):
                engine.state(plain.pid)
        finally:
            plain.kill()


def test_illegal_steps_are_illegal_state(driver: types.ModuleType, holder: HolderFactory) -> None:
    proc = holder("--vram", "1GiB")
    engine = BindingsEngine(fake)
    with pytest.raises(IllegalState, match="cannot be performed in the present state"):
        engine.checkpoint(proc.pid)


def test_states_4_and_5_of_newer_drivers(driver: types.ModuleType) -> None:
    engine = BindingsEngine(fake)
    fake.STATE_OVERRIDE[4242] = 4
    assert engine.state(4242) is ProcessState.CHECKPOINTING
    fake.STATE_OVERRIDE[4242] = 5
    assert engine.state(4242) is ProcessState.RESTORING
    fake.STATE_OVERRIDE[4242] = 9
    with pytest.raises(EngineFailed, match="unknown process state 9"):
        engine.state(4242)


def test_driver_without_the_api_is_no_checkpoint_api(driver: types.ModuleType) -> None:
    fake.NO_API = True
    engine = BindingsEngine(fake)
    with pytest.raises(
        NoCheckpointApi, match=r"no checkpoint API \(get the state of: operation not supported\)"
    ):
        engine.state(1)


@pytest.mark.parametrize(
    ("release", "missing"),
    [("13.0.1", "cuCheckpointProcessRestore"), ("12.6", "cuCheckpointProcessLock")],
)
def test_releases_without_a_call_are_refused_whole(
    driver: types.ModuleType, monkeypatch: pytest.MonkeyPatch, release: str, missing: str
) -> None:
    """Never suspend with a binding that could not resume."""
    monkeypatch.delattr(fake, missing)
    monkeypatch.setattr(sys.modules["cuda.bindings"], "__version__", release)
    with pytest.raises(NoCheckpointApi, match=f"cuda-bindings {release} lacks {missing}"):
        BindingsEngine()


def test_13_3_0_without_restore_args_restores_in_place_only(
    driver: types.ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    gpus: SimBackend,
    holder: HolderFactory,
) -> None:
    monkeypatch.delattr(fake, "CUcheckpointRestoreArgs")
    proc = holder("--vram", "3GiB")
    engine = BindingsEngine(fake)
    assert not engine.can_remap
    done = suspend(engine, gpus, pid=proc.pid)
    with pytest.raises(NoCheckpointApi, match="cannot restore onto another GPU"):
        resume(engine, gpus, pid=proc.pid, record=done, onto=1)
    assert engine.state(proc.pid) is ProcessState.CHECKPOINTED
    assert resume(engine, gpus, pid=proc.pid, record=done).verified


def test_no_gpu_pairs_before_13_0_2(
    driver: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(fake, "CUcheckpointGpuPair")
    assert not BindingsEngine(fake).can_remap


def test_missing_libcuda_is_no_checkpoint_api(
    driver: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_lib(flags: int) -> tuple[int]:
        raise RuntimeError("Failed to dlopen libcuda.so.1")

    monkeypatch.setattr(fake, "cuInit", no_lib)
    with pytest.raises(NoCheckpointApi, match="libcuda was not found") as info:
        BindingsEngine()
    assert "NVIDIA driver" in info.value.hint


def test_entry_point_missing_from_the_driver(
    driver: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(pid: int, args: object) -> tuple[int]:
        raise RuntimeError('Function "cuCheckpointProcessLock" not found')

    monkeypatch.setattr(fake, "cuCheckpointProcessLock", missing)
    engine = BindingsEngine(fake)
    with pytest.raises(NoCheckpointApi, match="this driver has no checkpoint API"):
        engine.lock(1, timeout=1)


def test_no_gpu_at_cuinit(driver: types.ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fake, "cuInit", lambda flags: (fake.CUresult.CUDA_ERROR_NO_DEVICE,))
    with pytest.raises(NoCheckpointApi, match="no CUDA-capable device is detected"):
        BindingsEngine()


def test_package_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cuda", None)  # what import finds when it is absent
    with pytest.raises(NoCheckpointApi, match="cuda-bindings package is not importable") as info:
        load_driver()
    assert "gpuherd[cuda]" in info.value.hint
