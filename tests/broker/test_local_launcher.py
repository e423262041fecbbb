"""Job processes: preflight, launch environment, timeouts that kill the whole group, checks."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from gpuherd.broker.runner import launch, preflight, stop, success, wait
from gpuherd.gpu.procinfo import start_ticks
from gpuherd.spec import JobName, parse_config
from gpuherd.spec.model import JobSpec


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
    running = launch("job1", spec, gpu="GPU-abc", log_dir=tmp_path / "logs", workdir=tmp_path)
    assert running.start_ticks == start_ticks(running.pid) or running.proc.poll() is not None
    assert wait(running, timeout=30, grace=1) == (3, False)
    assert running.stdout.read_text().split() == [str(tmp_path), "GPU-abc", "GPU-abc", "job1", "2"]


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    spec = job_spec(
        f'    vram: 1GiB\n    command: [{sys.executable!r}, -c, "import subprocess, signal, '
        "sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        'print(c.pid, flush=True); time.sleep(60)"]\n'
    )
    running = launch("slow", spec, gpu="0", log_dir=tmp_path, workdir=tmp_path)
    deadline = time.monotonic() + 10
    while not running.stdout.read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(running.stdout.read_text())
    started = time.monotonic()
    code, timed_out = wait(running, timeout=0.5, grace=0.5)
    assert timed_out
    assert code == -9  # it ignored TERM, so KILL after the grace period
    assert time.monotonic() - started < 10
    deadline = time.monotonic() + 5
    while start_ticks(child) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert start_ticks(child) is None  # the child went with the group


def test_stop_is_idempotent(tmp_path: Path) -> None:
    spec = job_spec(
        f"    vram: 1GiB\n    command: [{sys.executable!r}, -c, 'import time; time.sleep(60)']\n"
    )
    running = launch("c", spec, gpu="0", log_dir=tmp_path, workdir=tmp_path)
    assert stop(running, grace=2) == -15
    assert stop(running, grace=2) == -15


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
