"""Shared fixtures: the NVML tripwire, simulated hosts, and real holder processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pynvml
import pytest

from gpuherd.gpu.sim import SimHost
from tests.leaks import end, strays

GIB = 1024**3


@pytest.fixture(autouse=True)
def _nvml_tripwire(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach the real NVML binding: tests hand the backend a fake library."""

    def trip(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a test reached the real NVML binding; pass a fake `lib` instead")

    for name in ("nvmlInit", "nvmlInitWithFlags", "_LoadNvmlLibrary"):
        monkeypatch.setattr(pynvml, name, trip)


@pytest.fixture
def sim_dir(tmp_path: Path) -> Iterator[Path]:
    """A simulated host with two devices: 0 = 12 GiB RTX 3080 Ti, 1 = 20 GiB RTX 4000 Ada.

    Everything that still runs on it at the end is the test's doing (tenants a broker restored
    detached, holders started by jobs) and is ended with it."""
    directory = tmp_path / "sim"
    SimHost.init(
        directory,
        [("NVIDIA GeForce RTX 3080 Ti", 12 * GIB), ("NVIDIA RTX 4000 Ada Generation", 20 * GIB)],
    ).close()
    yield directory
    end(list(strays(directory)))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a process started under a test's temp dir survived it."""
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None:
        return
    left = strays(factory.getbasetemp())
    if not left:
        return
    lines = "\n".join(f"  {pid}: {cmd}" for pid, cmd in sorted(left.items()))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"processes left behind by the tests (now ended):\n{lines}", red=True)
    end(list(left))
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def gpuherd_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "gpuherd", *args]


HolderFactory = Callable[..., subprocess.Popen[str]]


@pytest.fixture
def holder(sim_dir: Path) -> Iterator[HolderFactory]:
    """Start `gpuherd sim hold` processes; waits until each holds (or has exited)."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str, wait: bool = True) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            gpuherd_argv("sim", "hold", "--sim-dir", str(sim_dir), *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        if wait:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line.startswith("holding"):
                proc.wait(timeout=10)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
