"""Local job processes: preflight, launch environment, stops that end the whole group, checks."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from gpuherd.broker.checks import preflight, success
from gpuherd.broker.launcher import Exited, LaunchError
from gpuherd.broker.local import LocalLauncher
from gpuherd.broker.records import Handle
from gpuherd.gpu.procinfo import start_ticks
from gpuherd.ids import JobId
from gpuherd.spec import JobName, parse_config
from gpuherd.spec.model import GpuSpec, JobSpec

GPU = GpuSpec(name="gpu0", index=0)


def wait_exit(launcher: LocalLauncher, handle: Handle, timeout: float = 30) -> Exited:
    deadline = time.monotonic() + timeout
    while (exited := launcher.poll(handle)) is None:
        assert time.monotonic() < deadline, "job still running"
        time.sleep(0.05)
    return exited


def child_of(out: Path) -> int:
    deadline = time.monotonic() + 10
    while not out.read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.05)
    return int(out.read_text())


def wait_gone(pid: int, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while start_ticks(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    return start_ticks(pid) is None


def job_spec(body: str) -> JobSpec:
    config = parse_config(f"version: 1\njobs:\n  j:\n{body}", source="j.yaml")
    return config.jobs[JobName("j")]


def test_preflight_checks(tmp_path: Path) -> None:
    (tmp_path / "factorio" / "bin" / "x64").mkdir(parents=True)
    (tmp_path / "factorio" / "bin" / "x64" / "factorio").write_bytes(b"x" * 2048)
    for i in range(3):
        (tmp_path / "factorio" / f"mod{i}.lua").write_text("--")
    spec = job_spec(
        "    vram: 1GiB\n    command: [x]\n    preflight:\n"
        "      - exists: factorio/bin/x64/factorio\n"
        "      - exists: factorio/data/base\n"
        "      - min_free_disk: {path: '.', size: 1KiB}\n"
        "      - min_free_disk: {path: '.', size: 900TiB}\n"
        "      - command: sh\n"
        "      - command: no-such-renderer\n"
        "      - count: {glob: 'factorio/**/*.lua', min: 3}\n"
        "      - count: {glob: 'factorio/**/*.lua', min: 100}\n"
        "      - min_size: {path: factorio, size: 2KiB}\n"
        "      - min_size: {path: factorio, size: 1GiB}\n"
    )
    results = preflight(spec, tmp_path)
    assert [r.ok for r in results] == [
        True,
        False,
        True,
        False,
        True,
        False,
        True,
        False,
        True,
        False,
    ]
    assert results[1].detail == f"{tmp_path}/factorio/data/base is missing"
    assert results[7].detail == "3 found, at least 100 needed"


def test_launch_environment_and_exit(tmp_path: Path) -> None:
    spec = job_spec(
        f"    vram: 1GiB\n    env: {{RENDER_SCALE: '2'}}\n    command: [{sys.executable!r}, -c, "
        "\"import os; print(os.getcwd(), os.environ['CUDA_VISIBLE_DEVICES'], "
        "os.environ['NVIDIA_VISIBLE_DEVICES'], os.environ['GPUHERD_JOB_ID'], "
        "os.environ['RENDER_SCALE']); raise SystemExit(3)\"]\n"
    )
    launcher = LocalLauncher()
    gpu = GpuSpec(name="g", uuid="GPU-abc")
    handle = launcher.launch(
        JobId("job1"), spec, gpu=gpu, workdir=tmp_path, log_dir=tmp_path / "logs"
    )
    assert handle.launcher == "local"
    assert wait_exit(launcher, handle) == Exited(3)
    out = (tmp_path / "logs" / "job1.out").read_text().split()
    assert out == [str(tmp_path), "GPU-abc", "GPU-abc", "job1", "2"]


def test_a_job_that_cannot_start_raises_launch_error(tmp_path: Path) -> None:
    launcher = LocalLauncher()
    missing = JobSpec(vram=1, command=["/no/such/renderer"])
    with pytest.raises(LaunchError, match="/no/such/renderer: command not found"):
        launcher.launch(JobId("x"), missing, gpu=GPU, workdir=tmp_path, log_dir=tmp_path)
    # A NUL byte is refused where the job is declared; a launcher handed one still says no.
    with pytest.raises(ValueError, match="argument 1 contains a NUL byte"):
        JobSpec(vram=1, command=["echo", "nul\x00byte"])
    smuggled = missing.model_copy(update={"command": ["echo", "nul\x00byte"]})
    with pytest.raises(LaunchError):
        launcher.launch(JobId("y"), smuggled, gpu=GPU, workdir=tmp_path, log_dir=tmp_path)


def test_the_exit_status_outlives_the_broker(tmp_path: Path) -> None:
    """The group leader writes the job's exit status down, so a broker restarted while the job
    ran learns how it ended (before, every such job failed with "exit code unknown")."""
    code = "import time; time.sleep(1); raise SystemExit(7)"
    spec = job_spec(f"    vram: 1GiB\n    command: [{sys.executable!r}, -c, {code!r}]\n")
    first = LocalLauncher()
    handle = first.launch(JobId("e"), spec, gpu=GPU, workdir=tmp_path, log_dir=tmp_path)
    after_restart = LocalLauncher()
    assert after_restart.find(JobId("e"), tmp_path) == handle  # found by its job id as well
    assert after_restart.find(JobId("nope"), tmp_path) is None
    assert wait_exit(first, handle) == Exited(7)
    assert wait_exit(after_restart, handle) == Exited(7)


IGNORES_TERM = (
    "import subprocess, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "c = subprocess.Popen([sys.executable, '-c', "
    "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)']); "
    "print(c.pid, flush=True); {leader}"
)


def test_stop_kills_the_whole_process_group(tmp_path: Path) -> None:
    code = IGNORES_TERM.format(leader="time.sleep(60)")
    spec = job_spec(f"    vram: 1GiB\n    command: [{sys.executable!r}, -c, {code!r}]\n")
    launcher = LocalLauncher()
    handle = launcher.launch(JobId("slow"), spec, gpu=GPU, workdir=tmp_path, log_dir=tmp_path)
    child = child_of(tmp_path / "slow.out")
    started = time.monotonic()
    assert launcher.stop(handle, grace=0.5) == Exited(-9)  # it ignored TERM: KILL after grace
    assert time.monotonic() - started < 10
    assert wait_gone(child)  # the child went with the group


def test_children_that_ignore_term_are_killed_when_the_leader_obeys(tmp_path: Path) -> None:
    """The leader exits on TERM; its child ignores it. KILL goes to the group after the grace
    whatever the leader did (before, a child like this survived the job and held its memory)."""
    code = IGNORES_TERM.format(
        leader="signal.signal(signal.SIGTERM, signal.SIG_DFL); time.sleep(60)"
    )
    spec = job_spec(f"    vram: 1GiB\n    command: [{sys.executable!r}, -c, {code!r}]\n")
    launcher = LocalLauncher()
    handle = launcher.launch(JobId("wrap"), spec, gpu=GPU, workdir=tmp_path, log_dir=tmp_path)
    child = child_of(tmp_path / "wrap.out")
    assert launcher.stop(handle, grace=0.5) == Exited(-15)
    assert wait_gone(child)


def test_an_adopted_job_is_found_by_its_handle_and_stopped(tmp_path: Path) -> None:
    code = "import os, time; print(os.getpid(), flush=True); time.sleep(60)"
    spec = job_spec(f"    vram: 1GiB\n    command: [{sys.executable!r}, -c, {code!r}]\n")
    first = LocalLauncher()
    handle = first.launch(JobId("c"), spec, gpu=GPU, workdir=tmp_path, log_dir=tmp_path)
    child_of(tmp_path / "c.out")  # it runs
    after_restart = LocalLauncher()  # a new broker: not its child, known by pid + start time
    assert after_restart.adopt(handle)
    assert after_restart.poll(handle) is None
    recycled = Handle.of("local", pid=handle.get("pid"), ticks=handle.get("ticks") + 1)
    assert not after_restart.adopt(recycled)
    assert after_restart.stop(recycled, grace=1) == Exited(None)  # never signals a stranger
    assert after_restart.poll(handle) is None
    assert after_restart.stop(handle, grace=2) == Exited(-15)  # as its leader wrote it down
    assert first.poll(handle) == Exited(-15)  # reaped by its parent


def test_success_checks(tmp_path: Path) -> None:
    out = tmp_path / "out" / "d-1"
    out.mkdir(parents=True)
    for i in range(5):
        (out / f"{i}.jpg").write_text("x")
    spec = job_spec(
        "    vram: 1GiB\n    command: [x]\n    success:\n      - exit_code: 0\n"
        "      - glob: {pattern: 'out/d-*/*.jpg', min_count: 5}\n"
        "      - glob: {pattern: 'out/d-*/*.jpg', min_count: 1313}\n"
        "      - done_file: {path: done, timeout: 1s}\n      - not_on_cpu: 2m\n"
    )
    results = success(spec, exit_code=0, workdir=tmp_path, gpu_after=None)
    assert [(r.check, r.ok) for r in results] == [
        ("exit_code 0", True),
        ("glob out/d-*/*.jpg", True),
        ("glob out/d-*/*.jpg", False),
        ("done_file done", False),
        ("not_on_cpu", False),
    ]
    assert "probably ran on the CPU" in results[4].detail
    (tmp_path / "done").write_text("")
    again = success(spec, exit_code=1, workdir=tmp_path, gpu_after=3.0)
    assert [r.ok for r in again] == [False, True, False, True, True]
    assert os.path.exists(tmp_path / "done")
    late = success(spec, exit_code=0, workdir=tmp_path, gpu_after=500.0)
    assert not late[4].ok
    assert "first seen after 500.0s" in late[4].detail


def test_exit_zero_is_required_unless_the_job_says_otherwise(tmp_path: Path) -> None:
    plain = job_spec("    vram: 1GiB\n    command: [x]\n")
    assert [
        (r.check, r.ok) for r in success(plain, exit_code=0, workdir=tmp_path, gpu_after=None)
    ] == [("exit_code 0", True)]
    assert not success(plain, exit_code=3, workdir=tmp_path, gpu_after=None)[0].ok
    custom = job_spec("    vram: 1GiB\n    command: [x]\n    success: [{exit_code: 3}]\n")
    assert [r.ok for r in success(custom, exit_code=3, workdir=tmp_path, gpu_after=None)] == [True]
    # Adopted after a restart, the exit code is unknown: other checks judge, else it fails.
    (tmp_path / "done").write_text("")
    judged = job_spec("    vram: 1GiB\n    command: [x]\n    success: [{done_file: done}]\n")
    assert [
        (r.check, r.ok) for r in success(judged, exit_code=None, workdir=tmp_path, gpu_after=None)
    ] == [("done_file done", True)]
    unknown = success(plain, exit_code=None, workdir=tmp_path, gpu_after=None)
    assert not unknown[0].ok
    assert "unknown" in unknown[0].detail
