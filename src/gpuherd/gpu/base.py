"""The hardware view every other part reads: frozen snapshots behind one backend protocol.

A field the hardware (or driver, or permissions) cannot tell is None, never an exception, so
callers handle "unknown" in one way whichever backend produced the snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from gpuherd.ids import GpuUuid

ProcessKind = Literal["compute", "graphics", "compute+graphics"]


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuDevice:
    """One GPU as seen at snapshot time. Memory in bytes; `used` excludes driver-reserved."""

    index: int
    uuid: GpuUuid
    name: str
    memory_total: int
    memory_used: int
    memory_free: int
    memory_reserved: int | None = None
    utilization: int | None = None  # percent of time a kernel ran, last sample period
    temperature: int | None = None  # degrees Celsius


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuProcess:
    """A process holding a context on one GPU; a process on two GPUs appears twice."""

    gpu_index: int
    gpu_uuid: GpuUuid
    pid: int  # host PID: the driver knows no PID namespaces
    used_bytes: int | None
    kind: ProcessKind = "compute"
    name: str | None = None
    cmdline: tuple[str, ...] | None = None
    utilization: int | None = None  # percent of its GPU's time it ran kernels; None: unknown


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuSnapshot:
    """Everything one read of a backend returned, taken at `taken_at` (Unix time)."""

    backend: str
    taken_at: float
    devices: tuple[GpuDevice, ...]
    processes: tuple[GpuProcess, ...]
    driver_version: str | None = None
    cuda_version: str | None = None

    def device(self, index: int) -> GpuDevice | None:
        for dev in self.devices:
            if dev.index == index:
                return dev
        return None

    def processes_on(self, index: int) -> tuple[GpuProcess, ...]:
        return tuple(p for p in self.processes if p.gpu_index == index)


@runtime_checkable
class GpuBackend(Protocol):
    """Source of snapshots. Implementations: `nvml` (real GPUs) and `sim` (simulated host)."""

    name: str

    def snapshot(self) -> GpuSnapshot: ...

    def memory_free(self) -> dict[int, int]:
        """Free bytes by device index, and nothing else: cheap enough to read ten times a
        second (a snapshot also lists and attributes every process)."""
        ...

    def close(self) -> None: ...


class BackendUnavailable(Exception):
    """The backend cannot run here: `message` says why, `hint` how to fix it."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(f"{message}\nhint: {hint}")
        self.message = message
        self.hint = hint
