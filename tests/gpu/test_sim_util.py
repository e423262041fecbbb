"""`gpuherd sim util`: a simulated process's per-process utilization, as NVML would report it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from gpuherd.gpu.sim import SimHost
from tests.conftest import HolderFactory, gpuherd_argv


def util_of(sim_dir: Path, pid: int) -> int | None:
    with SimHost(sim_dir) as host:
        return next(p.utilization for p in host.snapshot().processes if p.pid == pid)


def run(sim_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = gpuherd_argv("sim", "util", *args, "--sim-dir", str(sim_dir))
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def test_busy_then_idle(sim_dir: Path, holder: HolderFactory) -> None:
    proc = holder("--vram", "1GiB", "--name", "ollama", "--util", "0")
    assert util_of(sim_dir, proc.pid) == 0
    assert run(sim_dir, str(proc.pid), "70").returncode == 0
    assert util_of(sim_dir, proc.pid) == 70
    with SimHost(sim_dir) as host:
        assert host.snapshot().devices[0].utilization == 70
    assert run(sim_dir, str(proc.pid), "0").returncode == 0
    assert util_of(sim_dir, proc.pid) == 0


def test_a_process_holding_nothing_is_refused(sim_dir: Path) -> None:
    done = run(sim_dir, "999999", "50")
    assert done.returncode == 2
    assert "holds nothing on GPU 0" in done.stderr
    assert "Traceback" not in done.stderr
    assert run(sim_dir, "1", "101").returncode == 2  # a percentage
