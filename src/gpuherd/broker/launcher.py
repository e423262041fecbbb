"""The seam between the engine and what runs a job: local processes today, Kubernetes Jobs next.

A launcher starts a job, says whether it ended (and how), stops it, finds it again after a
broker restart from the handle the journal kept, and tells which GPU processes are the job's.
The engine knows nothing else about how a job runs. A new launcher is one module implementing
`Launcher` plus a line in `launchers.LAUNCHERS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gpuherd.broker.records import Handle
from gpuherd.ids import JobId
from gpuherd.spec.model import GpuSpec, JobSpec


class LaunchError(Exception):
    """The job could not be started (missing binary, bad workdir, invalid argv)."""


@dataclass(frozen=True, slots=True)
class Exited:
    code: int | None  # None: ended, but nobody could read its exit status
    # Why it ended, when what ran it says so (a Kubernetes Job its controller failed for running
    # past its deadline): judged like the broker's own reasons to stop a job.
    reason: str | None = None


class Launcher(Protocol):
    name: str

    def prepare(self, job_id: JobId, name: str, job: JobSpec) -> list[str]:
        """Before any tenant is released for it: why it cannot start here (empty: it can).
        The Kubernetes launcher creates a config job's Job, suspended, and checks its volumes."""
        ...

    def launch(
        self, job_id: JobId, job: JobSpec, *, gpu: GpuSpec, workdir: Path, log_dir: Path
    ) -> Handle:
        """Start it; raises LaunchError."""
        ...

    def poll(self, handle: Handle) -> Exited | None:
        """None while it runs."""
        ...

    def stop(self, handle: Handle, *, grace: float) -> Exited:
        """TERM, then KILL after `grace`; returns once it is gone."""
        ...

    def adopt(self, handle: Handle) -> bool:
        """After a restart: whether the job behind `handle` still runs (it is followed again)."""
        ...

    def find(self, job_id: JobId, log_dir: Path) -> Handle | None:
        """After a crash between starting a job and journaling its handle: the job, if it
        runs (None if it never started)."""
        ...

    def owns(self, handle: Handle, pid: int) -> bool:
        """Whether GPU process `pid` belongs to the job (its memory counts as the job's)."""
        ...
