"""Following a running job: what the engine knows of it, and when to stop it early."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gpuherd.broker.records import Handle, JobRow
from gpuherd.gpu.base import GpuSnapshot
from gpuherd.ids import JobId
from gpuherd.spec.model import GpuSpec, JobSpec, NotOnCpuCheck


@dataclass
class Followed:
    """A job whose process the engine follows."""

    row: JobRow
    job: JobSpec
    gpu: GpuSpec
    handle: Handle
    workdir: Path
    vram: int  # what it was admitted with, in bytes: promised to it until it exits
    gpu_seen_at: float | None = None  # when one of its processes first showed on the GPU
    peak_vram: int = 0
    vram_now: int = 0
    stopped_for: str | None = None  # why the broker stopped it (timeout, not on the GPU, cancel)
    watched: bool = True  # False: followed only after a restart, its start was not seen


@dataclass(frozen=True, slots=True)
class Published:
    """What the engine saw at its last step, swapped in whole: readers need no lock."""

    snapshot: GpuSnapshot | None = None
    waiting: Mapping[JobId, str] = field(default_factory=dict)
    vram: Mapping[JobId, int] = field(default_factory=dict)


def must_stop(f: Followed, elapsed: float) -> str | None:
    if elapsed > f.job.timeout:
        return f"timed out after {elapsed:.0f}s (timeout {f.job.timeout:g}s)"
    for check in f.job.success:
        if isinstance(check, NotOnCpuCheck) and f.gpu_seen_at is None and elapsed > check.within:
            # A render on llvmpipe runs for hours; stop it now, not at the end.
            return (
                f"not on the GPU after {check.within:g}s: stopped early "
                "(it is probably rendering or computing on the CPU)"
            )
    return None
