"""Preflight checks (before anything is released) and success checks (after the job exits).

Preflight runs before anything is preempted: never free VRAM for a job that cannot start
(a half-copied install fails here, not after Ollama was stopped).
"""

from __future__ import annotations

import glob as _glob
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from gpuherd.broker.clock import SYSTEM, Clock, wait_until
from gpuherd.spec.model import (
    CommandCheck,
    CountCheck,
    DiskCheck,
    DoneFileCheck,
    ExistsCheck,
    ExitCodeCheck,
    GlobCheck,
    JobSpec,
    NotOnCpuCheck,
    PreflightCheck,
    SizeCheck,
    SuccessCheck,
)
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
    match check:
        case ExistsCheck(path=path):
            found = (workdir / path).exists()
            return CheckResult(
                f"exists {path}", found, "present" if found else f"{workdir / path} is missing"
            )
        case DiskCheck(path=path, size=need):
            try:
                free = shutil.disk_usage(workdir / path).free
            except OSError as exc:  # an unmounted scratch disk: the job cannot start
                return CheckResult(
                    f"min_free_disk {path}", False, f"{workdir / path}: {exc.strerror or exc}"
                )
            return CheckResult(
                f"min_free_disk {path}",
                free >= need,
                f"{format_bytes(free)} free, {format_bytes(need)} needed",
            )
        case CommandCheck(name=name):
            found_at = shutil.which(name, path=f"{workdir}{os.pathsep}{os.environ.get('PATH', '')}")
            return CheckResult(
                f"command {name}", found_at is not None, found_at or f"{name} is not on PATH"
            )
        case CountCheck(glob=pattern, min=minimum):
            return _at_least(workdir, pattern, minimum, "count", "found")
        case SizeCheck(path=path, size=need):
            target = workdir / path
            size = _size_of(target) if target.exists() else 0
            return CheckResult(
                f"min_size {path}",
                size >= need,
                f"{format_bytes(size)}, at least {format_bytes(need)} needed",
            )


def preflight(job: JobSpec, workdir: Path) -> list[CheckResult]:
    return [_preflight_one(c, workdir) for c in job.preflight]


def success(
    job: JobSpec,
    *,
    exit_code: int | None,
    workdir: Path,
    gpu_after: float | None,
    gpu_watched: bool = True,
    wait_done_file: bool = True,
    clock: Clock = SYSTEM,
) -> list[CheckResult]:
    """Checks after exit.

    `exit_code` is None when nobody could read it (a job adopted after a broker restart).
    `gpu_after`: seconds from start until one of the job's processes showed on the GPU (None:
    never). `gpu_watched` False: nobody watched the job from its start (a broker restart), so
    `not_on_cpu` cannot be judged and is not held against it. Without an explicit `exit_code`
    check, exit 0 is required, as in any job runner; an adopted job with other checks is judged
    by those alone.
    """
    checks: list[SuccessCheck] = list(job.success)
    if not any(isinstance(c, ExitCodeCheck) for c in checks) and (
        exit_code is not None or not checks
    ):
        checks.insert(0, ExitCodeCheck(code=0))
    return [
        _success_one(
            c,
            exit_code=exit_code,
            workdir=workdir,
            gpu_after=gpu_after,
            gpu_watched=gpu_watched,
            wait_done_file=wait_done_file,
            clock=clock,
        )
        for c in checks
    ]


def _success_one(  # noqa: PLR0911 - one return per check kind and outcome
    check: SuccessCheck,
    *,
    exit_code: int | None,
    workdir: Path,
    gpu_after: float | None,
    gpu_watched: bool,
    wait_done_file: bool,
    clock: Clock,
) -> CheckResult:
    match check:
        case ExitCodeCheck(code=code):
            if exit_code is None:
                return CheckResult(
                    f"exit_code {code}",
                    False,
                    "exit code unknown: the broker restarted while the job ran",
                )
            return CheckResult(f"exit_code {code}", exit_code == code, f"exited {exit_code}")
        case GlobCheck(pattern=pattern, min_count=minimum):
            return _at_least(workdir, pattern, minimum, "glob", "files")
        case DoneFileCheck(path=path, timeout=timeout):
            target = workdir / path
            found = wait_until(
                target.exists, timeout=timeout if wait_done_file else 0, poll=0.1, clock=clock
            )
            return CheckResult(f"done_file {path}", found, "present" if found else "never written")
        case NotOnCpuCheck(within=within):
            if gpu_after is not None and gpu_after <= within:
                return CheckResult("not_on_cpu", True, f"on the GPU after {gpu_after:.1f}s")
            if not gpu_watched:
                return CheckResult("not_on_cpu", True, "not judged: the broker restarted")
            seen = "" if gpu_after is None else f" (first seen after {gpu_after:.1f}s)"
            return CheckResult(
                "not_on_cpu",
                False,
                f"no process of the job appeared on the GPU within {within:g}s{seen}: "
                "it probably ran on the CPU (software rendering or a CPU fallback)",
            )
