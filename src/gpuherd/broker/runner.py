"""Job processes: preflight checks, launch on a GPU, timeout handling, success checks.

Preflight runs before anything is preempted: never free VRAM for a job that cannot start
(seed 000's half-copied Factorio install would fail here, not after Ollama was stopped).
"""

from __future__ import annotations

import glob as _glob
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from gpuherd.gpu.procinfo import start_ticks
from gpuherd.spec.model import JobSpec, PreflightCheck, SuccessCheck
from gpuherd.units import format_bytes


@dataclass(frozen=True, slots=True)
class CheckResult:
    check: str
    ok: bool
    detail: str


def _at_least(workdir: Path, pattern: str, minimum: int, label: str, noun: str) -> CheckResult:
    """At least `minimum` paths under `workdir` match the (recursive) glob `pattern`."""
    matches = _glob.glob(str(workdir / pattern), recursive=True)
    return CheckResult(
        f"{label} {pattern}",
        len(matches) >= minimum,
        f"{len(matches)} {noun}, at least {minimum} needed",
    )


def _size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _preflight_one(check: PreflightCheck, workdir: Path) -> CheckResult:
    if check.exists is not None:
        path = workdir / check.exists
        return CheckResult(
            f"exists {check.exists}",
            path.exists(),
            "present" if path.exists() else f"{path} is missing",
        )
    if check.min_free_disk is not None:
        free = shutil.disk_usage(workdir / check.min_free_disk.path).free
        need = check.min_free_disk.size
        return CheckResult(
            f"min_free_disk {check.min_free_disk.path}",
            free >= need,
            f"{format_bytes(free)} free, {format_bytes(need)} needed",
        )
    if check.command is not None:
        found = shutil.which(
            check.command, path=f"{workdir}{os.pathsep}{os.environ.get('PATH', '')}"
        )
        return CheckResult(
            f"command {check.command}",
            found is not None,
            found or f"{check.command} is not on PATH",
        )
    if check.count is not None:
        return _at_least(workdir, check.count.glob, check.count.min, "count", "found")
    assert check.min_size is not None
    path = workdir / check.min_size.path
    size = _size_of(path) if path.exists() else 0
    return CheckResult(
        f"min_size {check.min_size.path}",
        size >= check.min_size.size,
        f"{format_bytes(size)}, at least {format_bytes(check.min_size.size)} needed",
    )


def preflight(job: JobSpec, workdir: Path) -> list[CheckResult]:
    return [_preflight_one(c, workdir) for c in job.preflight]


@dataclass
class RunningJob:
    proc: subprocess.Popen[bytes]
    pid: int
    start_ticks: int | None
    started_at: float
    stdout: Path
    stderr: Path


def launch(
    job_id: str, job: JobSpec, *, gpu: str, log_dir: Path, workdir: Path | None = None
) -> RunningJob:
    """Start the job in its own process group on `gpu` (index or UUID), output to log files."""
    log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    out, err = log_dir / f"{job_id}.out", log_dir / f"{job_id}.err"
    env = {
        **os.environ,
        **job.env,
        "CUDA_VISIBLE_DEVICES": gpu,
        "NVIDIA_VISIBLE_DEVICES": gpu,
        "GPUHERD_JOB_ID": job_id,
    }
    cwd = workdir or (Path(job.workdir) if job.workdir else None)
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            job.command,
            cwd=cwd,
            env=env,
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return RunningJob(proc, proc.pid, start_ticks(proc.pid), time.time(), out, err)


def wait(
    running: RunningJob, *, timeout: float, grace: float, poll: float = 0.05
) -> tuple[int, bool]:
    """(exit code, timed out). On timeout the whole process group gets TERM, then KILL."""
    deadline = time.monotonic() + timeout
    while running.proc.poll() is None:
        if time.monotonic() >= deadline:
            return stop(running, grace=grace), True
        time.sleep(poll)
    return running.proc.returncode, False


def stop(running: RunningJob, *, grace: float) -> int:
    """TERM the job's process group, KILL it after `grace`; returns the exit code."""
    for sig, wait_for in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(running.pid, sig)
        except ProcessLookupError:
            break
        try:
            return running.proc.wait(timeout=wait_for)
        except subprocess.TimeoutExpired:
            continue
    return running.proc.wait()


def success(
    job: JobSpec,
    *,
    exit_code: int | None,
    workdir: Path,
    gpu_after: float | None,
    wait_done_file: bool = True,
) -> list[CheckResult]:
    """Checks after exit.

    `exit_code` is None when nobody could read it (a job adopted after a broker restart).
    `gpu_after`: seconds from start until one of the job's processes showed on the GPU (None:
    never). Without an explicit `exit_code` check, exit 0 is required, as in any job runner;
    an adopted job with other checks is judged by those alone.
    """
    checks = list(job.success)
    if not any(c.exit_code is not None for c in checks) and (exit_code is not None or not checks):
        checks.insert(0, SuccessCheck(exit_code=0))
    return [_success_one(c, exit_code, workdir, gpu_after, wait_done_file) for c in checks]


def _success_one(
    check: SuccessCheck,
    exit_code: int | None,
    workdir: Path,
    gpu_after: float | None,
    wait_done_file: bool,
) -> CheckResult:
    if check.exit_code is not None:
        if exit_code is None:
            return CheckResult(
                f"exit_code {check.exit_code}",
                False,
                "exit code unknown: the broker restarted while the job ran",
            )
        return CheckResult(
            f"exit_code {check.exit_code}", exit_code == check.exit_code, f"exited {exit_code}"
        )
    if check.glob is not None:
        return _at_least(workdir, check.glob.pattern, check.glob.min_count, "glob", "files")
    if check.done_file is not None:
        path = workdir / check.done_file.path
        deadline = time.monotonic() + (check.done_file.timeout if wait_done_file else 0)
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        return CheckResult(
            f"done_file {check.done_file.path}",
            path.exists(),
            "present" if path.exists() else "never written",
        )
    assert check.not_on_cpu is not None
    within = check.not_on_cpu.within
    if gpu_after is not None and gpu_after <= within:
        return CheckResult("not_on_cpu", True, f"on the GPU after {gpu_after:.1f}s")
    seen = "" if gpu_after is None else f" (first seen after {gpu_after:.1f}s)"
    return CheckResult(
        "not_on_cpu",
        False,
        f"no process of the job appeared on the GPU within {within:g}s{seen}: "
        "it probably ran on the CPU (software rendering or a CPU fallback)",
    )
