"""`gpuherd checkpoint` end to end on the simulated driver: real holder processes, real records."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from gpuherd.gpu.sim import SimHost, SimOutOfMemory
from tests.checkpoint.conftest import Cli, as_json
from tests.conftest import GIB, HolderFactory, gpuherd_argv, pid_alive, wait_for


def used(sim_dir: Path, gpu: int) -> int:
    with SimHost(sim_dir) as host:
        device = host.snapshot().device(gpu)
    assert device is not None
    return device.memory_used


def state(sim_dir: Path, pid: int) -> str:
    with SimHost(sim_dir) as host:
        return host.state_of(pid)


def test_suspend_then_resume_keeps_the_process(
    cli: Cli, holder: HolderFactory, sim_dir: Path, tmp_path: Path
) -> None:
    proc = holder("--vram", "6GiB", "--gpu", "0")
    assert as_json(cli("state", str(proc.pid), "--json"))["state"] == "running"

    done = cli("suspend", str(proc.pid), "--json")
    assert done.returncode == 0, done.stderr
    body = as_json(done)
    assert body["bytes"] == 6 * GIB
    assert body["freed_bytes"] == 6 * GIB
    assert body["verified"] is True
    assert body["gpu_index"] == 0
    assert used(sim_dir, 0) == 0
    assert state(sim_dir, proc.pid) == "checkpointed"
    assert pid_alive(proc.pid)
    assert (tmp_path / "state" / "gpuherd" / "checkpoints" / f"{proc.pid}.json").exists()

    shown = as_json(cli("state", str(proc.pid), "--json"))
    assert shown["state"] == "checkpointed"
    assert shown["suspended"]["bytes"] == 6 * GIB
    # 6 GiB at the conservative 5 GB/s, plus a second.
    assert abs(shown["restore_estimate_s"] - (6 * GIB / 5e9 + 1)) < 1e-9

    back = cli("resume", str(proc.pid))
    assert back.returncode == 0, back.stderr
    assert f"resumed process {proc.pid} on GPU 0: 6.0 GiB back" in back.stdout
    assert used(sim_dir, 0) == 6 * GIB
    assert state(sim_dir, proc.pid) == "running"
    assert proc.poll() is None  # same pid, never restarted
    assert not (tmp_path / "state" / "gpuherd" / "checkpoints" / f"{proc.pid}.json").exists()


def test_text_output_names_bytes_time_and_rate(cli: Cli, holder: HolderFactory) -> None:
    proc = holder("--vram", "2GiB")
    out = cli("suspend", str(proc.pid), "--lock-timeout", "3s")
    assert out.returncode == 0, out.stderr
    assert "2.0 GiB moved from GPU 0" in out.stdout
    assert "GB/s" in out.stdout
    assert "freed 2.0 GiB" in out.stdout
    again = cli("suspend", str(proc.pid))
    assert again.returncode == 1
    assert "is checkpointed; suspend needs it running" in again.stderr


def test_resume_that_does_not_fit_is_refused_and_stays_checkpointed(
    cli: Cli, holder: HolderFactory, sim_dir: Path
) -> None:
    victim = holder("--vram", "8GiB")
    assert cli("suspend", str(victim.pid)).returncode == 0
    blocker = holder("--vram", "10GiB")  # takes the freed memory: 6 GiB left of 16
    refused = cli("resume", str(victim.pid))
    assert refused.returncode == 1
    assert "GPU 0 has 6.0 GiB free, it needs 8.0 GiB plus a 256.0 MiB margin" in refused.stderr
    assert "stays checkpointed" in refused.stderr
    # Never `failed`: the driver would have poisoned it for good.
    assert state(sim_dir, victim.pid) == "checkpointed"
    body = as_json(cli("resume", str(victim.pid), "--json"))
    assert body["ok"] is False
    assert body["error"] == "NotEnoughVram"
    assert body["need"] == 8 * GIB
    assert body["free"] == 6 * GIB

    blocker.terminate()
    blocker.wait(timeout=10)
    assert cli("resume", str(victim.pid)).returncode == 0
    assert used(sim_dir, 0) == 8 * GIB
    assert state(sim_dir, victim.pid) == "running"


def test_resume_waits_for_room(
    cli: Cli, holder: HolderFactory, sim_dir: Path, tmp_path: Path
) -> None:
    victim = holder("--vram", "8GiB")
    assert cli("suspend", str(victim.pid)).returncode == 0
    blocker = holder("--vram", "10GiB")
    env = {**os.environ, "GPUHERD_SIM_DIR": str(sim_dir), "XDG_STATE_HOME": str(tmp_path / "state")}
    waiting = subprocess.Popen(
        gpuherd_argv(
            "checkpoint", "resume", str(victim.pid), "--wait", "20s", "--json", "-b", "sim"
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        time.sleep(1.0)
        assert waiting.poll() is None  # still waiting for room
        assert state(sim_dir, victim.pid) == "checkpointed"
        blocker.terminate()
        out, err = waiting.communicate(timeout=30)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.communicate()
    assert waiting.returncode == 0, err
    assert '"waited_s"' in out
    assert state(sim_dir, victim.pid) == "running"
    assert used(sim_dir, 0) == 8 * GIB


def test_wait_that_expires_exits_1_with_the_numbers(
    cli: Cli, holder: HolderFactory, sim_dir: Path
) -> None:
    victim = holder("--vram", "8GiB")
    assert cli("suspend", str(victim.pid)).returncode == 0
    holder("--vram", "10GiB")
    started = time.monotonic()
    out = cli("resume", str(victim.pid), "--wait", "1s")
    assert time.monotonic() - started >= 1.0
    assert out.returncode == 1
    assert "6.0 GiB free" in out.stderr
    assert state(sim_dir, victim.pid) == "checkpointed"


def test_resume_onto_another_gpu_of_the_same_chip(
    cli: Cli, holder: HolderFactory, sim_dir: Path
) -> None:
    proc = holder("--vram", "6GiB", "--gpu", "0")
    assert cli("suspend", str(proc.pid)).returncode == 0
    holder("--vram", "12GiB", "--gpu", "0")  # GPU 0 is now too full
    other_chip = cli("resume", str(proc.pid), "--onto", "2")
    assert other_chip.returncode == 1
    assert "GPU 2 (NVIDIA L4) is not the chip type" in other_chip.stderr
    assert state(sim_dir, proc.pid) == "checkpointed"

    moved = as_json(cli("resume", str(proc.pid), "--onto", "1", "--json"))
    assert moved["gpu_index"] == 1
    assert moved["moved_from"] == 0
    assert moved["verified"] is True
    assert used(sim_dir, 1) == 6 * GIB
    assert used(sim_dir, 0) == 12 * GIB
    assert state(sim_dir, proc.pid) == "running"


def test_resume_of_a_running_process_is_a_no_op(cli: Cli, holder: HolderFactory) -> None:
    proc = holder("--vram", "1GiB")
    out = cli("resume", str(proc.pid))
    assert out.returncode == 0
    assert "already running" in out.stdout


def test_resume_unlocks_a_process_restored_but_left_locked(
    cli: Cli, holder: HolderFactory, sim_dir: Path
) -> None:
    """A crash between restore and unlock: resume finishes the job."""
    proc = holder("--vram", "1GiB")
    with SimHost(sim_dir) as host:
        host.lock(proc.pid)
    assert cli("resume", str(proc.pid)).returncode == 0
    assert state(sim_dir, proc.pid) == "running"


def test_resume_without_a_record_uses_what_the_driver_holds(
    cli: Cli, holder: HolderFactory, sim_dir: Path
) -> None:
    proc = holder("--vram", "3GiB")
    with SimHost(sim_dir) as host:  # checkpointed behind gpuherd's back
        host.lock(proc.pid)
        host.checkpoint(proc.pid)
    out = as_json(cli("resume", str(proc.pid), "--json"))
    assert out["bytes"] == 3 * GIB
    assert used(sim_dir, 0) == 3 * GIB


def test_a_failed_process_is_reported_as_lost(
    cli: Cli, holder: HolderFactory, sim_dir: Path
) -> None:
    proc = holder("--vram", "8GiB")
    assert cli("suspend", str(proc.pid)).returncode == 0
    holder("--vram", "10GiB")
    with SimHost(sim_dir) as host, pytest.raises(SimOutOfMemory):
        host.restore(proc.pid)  # a restore that bypassed gpuherd's check
    out = cli("resume", str(proc.pid))
    assert out.returncode == 1
    assert "is failed" in out.stderr
    assert "only ending it frees it" in out.stderr


def test_unknown_pid_and_bad_durations(cli: Cli, holder: HolderFactory) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    out = cli("state", str(dead.pid))
    assert out.returncode == 1
    assert "holds no simulated GPU context" in out.stderr
    proc = holder("--vram", "1GiB")
    bad = cli("suspend", str(proc.pid), "--lock-timeout", "soon")
    assert bad.returncode == 2
    assert "--lock-timeout 'soon'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_no_checkpoint_api_here_exits_3(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """This machine has no cuda-bindings and no cuda-checkpoint: a clear message, exit 3."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    out = cli("state", str(os.getpid()), backend="nvml")
    assert out.returncode == 3
    assert "no CUDA checkpoint API here" in out.stderr
    assert "gpuherd[cuda]" in out.stderr
    assert "Traceback" not in out.stderr


def test_suspend_never_stops_the_target(cli: Cli, holder: HolderFactory, sim_dir: Path) -> None:
    """A stopped process cannot run the CUDA restore thread: refuse, and leave it as it was."""
    proc = holder("--vram", "2GiB")
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: Path(f"/proc/{proc.pid}/stat").read_text().split(") ")[1][0] == "T")
        out = cli("suspend", str(proc.pid))
        assert out.returncode == 1
        assert "is stopped" in out.stderr
        assert f"kill -CONT {proc.pid}" in out.stderr
        assert state(sim_dir, proc.pid) == "running"
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    assert cli("suspend", str(proc.pid)).returncode == 0
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: Path(f"/proc/{proc.pid}/stat").read_text().split(") ")[1][0] == "T")
        out = cli("resume", str(proc.pid))
        assert out.returncode == 1
        assert "is stopped" in out.stderr
        assert state(sim_dir, proc.pid) == "checkpointed"
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    assert cli("resume", str(proc.pid)).returncode == 0
