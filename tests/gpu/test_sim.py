"""The simulated host: real holder processes, OOM, death reclaim, checkpoint state machine."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gpuherd.gpu.base import BackendUnavailable
from gpuherd.gpu.sim import (
    SimBackend,
    SimError,
    SimHost,
    SimIllegalState,
    SimNoSuchProcess,
    SimOutOfMemory,
)
from tests.conftest import GIB, HolderFactory, gpuherd_argv, wait_for


def used(sim_dir: Path, gpu: int = 0) -> int:
    with SimHost(sim_dir) as host:
        device = host.snapshot().device(gpu)
    assert device is not None
    return device.memory_used


def test_init_creates_devices(sim_dir: Path) -> None:
    snap = SimBackend(sim_dir).snapshot()
    assert snap.backend == "sim"
    assert [
        (d.index, d.name, d.memory_total, d.memory_used, d.memory_free) for d in snap.devices
    ] == [
        (0, "NVIDIA GeForce RTX 3080 Ti", 12 * GIB, 0, 12 * GIB),
        (1, "NVIDIA RTX 4000 Ada Generation", 20 * GIB, 0, 20 * GIB),
    ]
    assert snap.devices[0].uuid.startswith("GPU-")
    assert snap.devices[0].uuid != snap.devices[1].uuid
    assert snap.processes == ()


def test_init_refuses_to_overwrite(sim_dir: Path) -> None:
    with pytest.raises(SimError, match="pass --force"):
        SimHost.init(sim_dir, [("x", GIB)])
    SimHost.init(sim_dir, [("x", GIB)], force=True).close()
    assert [d.name for d in SimBackend(sim_dir).snapshot().devices] == ["x"]


def test_missing_host_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match="no simulated GPUs") as info:
        SimHost(tmp_path / "nothing")
    assert "gpuherd sim init" in info.value.hint


def test_holder_holds_until_sigterm(sim_dir: Path, holder: HolderFactory) -> None:
    proc = holder("--gpu", "0", "--vram", "4GiB", "--name", "ollama")
    snap = SimBackend(sim_dir).snapshot()
    assert [(p.pid, p.used_bytes, p.name, p.gpu_index) for p in snap.processes] == [
        (proc.pid, 4 * GIB, "ollama", 0)
    ]
    assert snap.processes[0].cmdline is not None
    assert "--name" in snap.processes[0].cmdline
    assert snap.devices[0].memory_free == 8 * GIB
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert used(sim_dir) == 0


def test_holder_for_exits_zero_and_frees(sim_dir: Path, holder: HolderFactory) -> None:
    proc = holder("--vram", "1GiB", "--for", "0.3s")
    assert proc.wait(timeout=10) == 0
    assert used(sim_dir) == 0


def test_out_of_memory(sim_dir: Path, holder: HolderFactory) -> None:
    holder("--gpu", "0", "--vram", "10GiB")
    proc = holder("--gpu", "0", "--vram", "4GiB", wait=False)
    assert proc.wait(timeout=10) == 1
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert "out of memory" in err
    assert "tried to allocate 4.0 GiB on GPU 0" in err
    assert "2.0 GiB free" in err
    assert used(sim_dir) == 10 * GIB
    # The other device is independent.
    holder("--gpu", "1", "--vram", "19GiB")
    assert used(sim_dir, 1) == 19 * GIB


def test_oom_during_ramp_frees_what_was_taken(sim_dir: Path, holder: HolderFactory) -> None:
    holder("--vram", "6GiB")
    proc = holder("--vram", "10GiB", "--ramp", "0.5s", wait=False)
    assert proc.wait(timeout=10) == 1
    assert used(sim_dir) == 6 * GIB


def test_sigkill_reclaims_at_next_read(sim_dir: Path, holder: HolderFactory) -> None:
    proc = holder("--vram", "5GiB")
    assert used(sim_dir) == 5 * GIB
    proc.kill()
    proc.wait(timeout=10)
    assert used(sim_dir) == 0
    # And the freed memory can be taken again.
    holder("--vram", "12GiB")
    assert used(sim_dir) == 12 * GIB


def test_reused_pid_does_not_inherit_memory(sim_dir: Path) -> None:
    """A record whose start time does not match the live process with that pid is dead."""
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        with SimHost(sim_dir) as host:
            host.allocate(pid=sleeper.pid, gpu=0, nbytes=GIB)
            host._conn.execute("UPDATE holders SET start_ticks = start_ticks - 1")
            assert host.snapshot().processes == ()
            # The next allocation by the real process starts from zero, not from the stale row.
            assert host.allocate(pid=sleeper.pid, gpu=0, nbytes=GIB) == GIB
    finally:
        sleeper.kill()
        sleeper.wait()


def test_concurrent_allocations_never_overcommit(sim_dir: Path) -> None:
    """Eight holders race for 4 GiB each on 12 GiB: exactly three win."""
    procs = [
        subprocess.Popen(
            gpuherd_argv("sim", "hold", "--sim-dir", str(sim_dir), "--vram", "4GiB", "--for", "3s"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    try:
        with ThreadPoolExecutor(8) as pool:
            firsts = list(pool.map(lambda p: p.stdout.readline() if p.stdout else "", procs))
        winners = [line for line in firsts if line.startswith("holding")]
        assert len(winners) == 3
        assert used(sim_dir) == 12 * GIB
    finally:
        for proc in procs:
            proc.kill()
            proc.communicate(timeout=10)
    codes = sorted(p.returncode for p in procs)
    assert codes.count(1) == 5


def test_checkpoint_state_machine(sim_dir: Path, holder: HolderFactory) -> None:
    proc = holder("--vram", "4GiB")
    with SimHost(sim_dir) as host:
        assert host.state_of(proc.pid) == "running"
        with pytest.raises(SimIllegalState, match="must be locked"):
            host.checkpoint(proc.pid)
        host.lock(proc.pid)
        assert host.state_of(proc.pid) == "locked"
        with pytest.raises(SimIllegalState):
            host.lock(proc.pid)
        host.checkpoint(proc.pid)
        assert host.state_of(proc.pid) == "checkpointed"
        snap = host.snapshot()
        assert snap.devices[0].memory_used == 0
        assert snap.processes == ()  # no context on the GPU while checkpointed
        assert proc.poll() is None  # but the process keeps running
        host.restore(proc.pid)
        assert host.state_of(proc.pid) == "locked"
        assert host.snapshot().devices[0].memory_used == 4 * GIB
        host.unlock(proc.pid)
        assert host.state_of(proc.pid) == "running"
        with pytest.raises(SimNoSuchProcess):
            host.state_of(999_999_999)


def test_restore_without_room_fails_for_good(sim_dir: Path, holder: HolderFactory) -> None:
    victim = holder("--vram", "6GiB")
    with SimHost(sim_dir) as host:
        host.lock(victim.pid)
        host.checkpoint(victim.pid)
        holder("--vram", "8GiB")  # someone takes the freed memory
        with pytest.raises(
            SimOutOfMemory, match=r"CUDA_ERROR_OUT_OF_MEMORY.*6\.0 GiB.*4\.0 GiB free"
        ):
            host.restore(victim.pid)
        assert host.state_of(victim.pid) == "failed"
        # Permanently: no action brings it back, even once memory is free again.
        for action in (host.restore, host.unlock, host.lock, host.checkpoint):
            with pytest.raises(SimIllegalState, match="it is failed"):
                action(victim.pid)
    assert used(sim_dir) == 8 * GIB


def test_locked_holder_waits_to_allocate(sim_dir: Path, holder: HolderFactory) -> None:
    """A process locked mid-ramp allocates nothing more until it is unlocked."""
    proc = holder("--vram", "4GiB", "--ramp", "2s", wait=False)
    wait_for(lambda: used(sim_dir) > 0)
    with SimHost(sim_dir) as host:
        host.lock(proc.pid)
        frozen = used(sim_dir)
        wait_for(lambda: proc.poll() is None, timeout=0.5)
        time.sleep(0.6)
        assert used(sim_dir) == frozen < 4 * GIB
        host.unlock(proc.pid)
    wait_for(lambda: used(sim_dir) == 4 * GIB)


def test_checkpoint_cli_mirrors_cuda_checkpoint(sim_dir: Path, holder: HolderFactory) -> None:
    proc = holder("--vram", "2GiB")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            gpuherd_argv(
                "sim", "checkpoint", "--sim-dir", str(sim_dir), "--pid", str(proc.pid), *args
            ),
            capture_output=True,
            text=True,
            check=False,
        )

    assert cli("--get-state").stdout.strip() == "running"
    assert cli("--toggle").stdout.strip() == "checkpointed"
    assert used(sim_dir) == 0
    assert cli("--toggle").stdout.strip() == "running"
    assert used(sim_dir) == 2 * GIB
    bad = cli("--action", "unlock")
    assert bad.returncode == 1
    assert "cannot unlock" in bad.stderr
    assert cli("--toggle", "--get-state").returncode == 2


def test_module_entry_point_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gpuherd", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith("gpuherd ")
