"""Suspend refuses, with the reason and without touching the process, what it cannot carry."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpuherd.checkpoint import Refused, suspend
from gpuherd.checkpoint.safety import driver_notes, read_proc_facts
from gpuherd.checkpoint.sim import SimEngine
from gpuherd.gpu.sim import SimBackend, SimHost
from tests.checkpoint.conftest import Cli, MappedFactory
from tests.conftest import GIB


def state(sim_dir: Path, pid: int) -> str:
    with SimHost(sim_dir) as host:
        return host.state_of(pid)


@pytest.fixture
def fake_nccl(tmp_path: Path) -> Path:
    lib = tmp_path / "lib" / "libnccl.so.2"
    lib.parent.mkdir()
    lib.write_bytes(b"\0" * 4096)
    return lib


@pytest.fixture
def nccl_shm() -> Iterator[Path]:
    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("no /dev/shm here")
    segment = shm / f"nccl-gpuherd-test-{id(shm)}"
    segment.write_bytes(b"\0" * 4096)
    yield segment
    segment.unlink(missing_ok=True)


def test_refuses_a_process_that_loads_nccl(
    cli: Cli, mapped: MappedFactory, fake_nccl: Path, sim_dir: Path
) -> None:
    proc = mapped(vram=2 * GIB, maps=(fake_nccl,))
    assert read_proc_facts(proc.pid).nccl == (str(fake_nccl),)
    out = cli("suspend", str(proc.pid))
    assert out.returncode == 1
    assert f"loads NCCL ({fake_nccl})" in out.stderr
    assert state(sim_dir, proc.pid) == "running"


def test_refuses_a_process_sharing_memory_over_ipc(
    cli: Cli, mapped: MappedFactory, nccl_shm: Path, sim_dir: Path
) -> None:
    proc = mapped(vram=2 * GIB, maps=(nccl_shm,))
    out = cli("suspend", str(proc.pid), "--json")
    assert out.returncode == 1
    assert "CUDA IPC cannot be checkpointed" in out.stdout
    assert state(sim_dir, proc.pid) == "running"


def test_refuses_a_process_on_two_gpus(cli: Cli, mapped: MappedFactory, sim_dir: Path) -> None:
    proc = mapped(vram=1 * GIB, gpus=(0, 1))
    out = cli("suspend", str(proc.pid))
    assert out.returncode == 1
    assert "uses 2 GPUs (0, 1)" in out.stderr
    assert state(sim_dir, proc.pid) == "running"


def test_refuses_a_process_that_is_not_a_cuda_process(cli: Cli) -> None:
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as plain:
        try:
            out = cli("suspend", str(plain.pid))
        finally:
            plain.kill()
    assert out.returncode == 1
    assert "is not a CUDA process: it holds no context on any GPU" in out.stderr


def test_refuses_when_host_ram_cannot_hold_the_copy(tmp_path: Path, mapped: MappedFactory) -> None:
    # A simulated 64 TiB GPU: its holder's memory cannot fit in this machine's RAM.
    huge = tmp_path / "huge"
    SimHost.init(huge, [("NVIDIA Imaginary", 64 * 1024 * GIB)]).close()
    proc = mapped(vram=32 * 1024 * GIB, on=huge)
    backend = SimBackend(huge)
    try:
        with pytest.raises(
            Refused, match=r"host RAM: .* available, the checkpoint needs 32.0 TiB"
        ) as info:
            suspend(SimEngine(backend.host), backend, pid=proc.pid)
        assert len(info.value.reasons) == 1
        assert backend.host.state_of(proc.pid) == "running"
    finally:
        backend.close()


def test_every_reason_is_listed(
    cli: Cli, mapped: MappedFactory, fake_nccl: Path, sim_dir: Path
) -> None:
    proc = mapped(vram=1 * GIB, gpus=(0, 2), maps=(fake_nccl,))
    out = cli("suspend", str(proc.pid))
    assert out.returncode == 1
    assert "uses 2 GPUs" in out.stderr
    assert "loads NCCL" in out.stderr


def test_driver_notes_warn_below_575_57_08_and_stay_quiet_for_sim() -> None:
    facts = read_proc_facts(os.getpid())
    old = driver_notes(
        engine="cuda-checkpoint", driver_version="570.124.06", persistence=False, facts=facts
    )
    assert any("older than 575.57.08" in n for n in old)
    assert any("persistence mode is off" in n for n in old)
    new = driver_notes(
        engine="cuda-checkpoint", driver_version="575.57.08", persistence=True, facts=facts
    )
    assert not any("older than" in n for n in new)
    assert not any("persistence" in n for n in new)
    assert driver_notes(engine="sim", driver_version="sim-1", persistence=None, facts=facts) == []


def test_persistence_mode_is_read_through_the_nvml_backend() -> None:
    from gpuherd.checkpoint.ops import persistence_mode
    from gpuherd.gpu.nvml import NvmlBackend
    from tests.gpu.fake_nvml import FakeNvml

    lib = FakeNvml()
    backend = NvmlBackend(lib=lib)
    lib.data["devices"][0]["persistence_mode"] = 0
    assert persistence_mode(backend, 0) is False
    lib.data["devices"][0]["persistence_mode"] = 1
    assert persistence_mode(backend, 0) is True
    lib.unsupported = frozenset({"nvmlDeviceGetPersistenceMode"})
    assert persistence_mode(backend, 0) is None  # unknown is not "off"
    snap = backend.snapshot()
    notes = driver_notes(
        engine="cuda-bindings",
        driver_version=snap.driver_version,
        persistence=False,
        facts=read_proc_facts(os.getpid()),
    )
    assert any("driver 550.54.14 is older than 575.57.08" in n for n in notes)
    backend.close()
