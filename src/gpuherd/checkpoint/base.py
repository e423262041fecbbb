"""What every checkpoint engine shares: process states, the engine protocol and typed errors.

An engine moves one process through the driver's checkpoint state machine
(running -> locked -> checkpointed -> locked -> running). It only acts; whether memory really left
or came back is checked against the GPU backend by `checkpoint.ops`.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Protocol

from gpuherd.ids import GpuUuid

__all__ = [
    "CheckpointEngine",
    "CheckpointError",
    "EngineFailed",
    "IllegalState",
    "LockTimeout",
    "NoCheckpointApi",
    "NotCudaProcess",
    "NotEnoughVram",
    "ProcessState",
    "Refused",
    "restore_seconds",
]

# Conservative restore bandwidth for estimates: published figures are 4.6-8.1 GB/s (B200) and
# about 15 s per GPU on 8xH100; the extra second covers get-state and unlock round trips.
RESTORE_BYTES_PER_SECOND = 5e9
RESTORE_OVERHEAD_S = 1.0


def restore_seconds(nbytes: int) -> float:
    """How long a restore of `nbytes` of device memory may take, for plans and status."""
    return max(0, nbytes) / RESTORE_BYTES_PER_SECOND + RESTORE_OVERHEAD_S


class ProcessState(StrEnum):
    """CUprocessState: 0-3 since r570; 4/5 are reported while a step is under way (13.4+)."""

    RUNNING = "running"
    LOCKED = "locked"
    CHECKPOINTED = "checkpointed"
    FAILED = "failed"
    CHECKPOINTING = "checkpointing"
    RESTORING = "restoring"

    @classmethod
    def from_code(cls, code: int) -> ProcessState:
        order = list(cls)
        if not 0 <= code < len(order):
            raise EngineFailed(f"the driver reported an unknown process state {code}")
        return order[code]


class CheckpointError(Exception):
    """Base of every checkpoint failure; `str()` is a sentence for the user."""


class NoCheckpointApi(CheckpointError):
    """This driver, binding or tool lacks the checkpoint API (or the feature asked for)."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class NotCudaProcess(CheckpointError):
    """The pid has no CUDA context the driver can checkpoint."""


class IllegalState(CheckpointError):
    """The step does not apply to the state the process is in."""

    def __init__(self, message: str, state: ProcessState | None = None) -> None:
        super().__init__(message)
        self.state = state


class LockTimeout(CheckpointError):
    """The lock did not take within its timeout; the process was left running."""


class EngineFailed(CheckpointError):
    """The driver or tool failed in a way not covered by the other errors."""


class Refused(CheckpointError):
    """A safety check said no before anything was done to the process."""

    def __init__(self, pid: int, reasons: list[str]) -> None:
        super().__init__(f"refusing to act on process {pid}: " + "; ".join(reasons))
        self.pid = pid
        self.reasons = reasons


class NotEnoughVram(CheckpointError):
    """Resume would not fit: restoring now could poison the process for good."""

    def __init__(self, *, pid: int, gpu: int, need: int, free: int, margin: int) -> None:
        from gpuherd.units import format_bytes

        super().__init__(
            f"not resuming process {pid}: GPU {gpu} has {format_bytes(free)} free, it needs "
            f"{format_bytes(need)} plus a {format_bytes(margin)} margin; it stays checkpointed"
        )
        self.pid = pid
        self.gpu = gpu
        self.need = need
        self.free = free
        self.margin = margin


class CheckpointEngine(Protocol):
    """One way to reach the driver's checkpoint API. Implementations: bindings, tool, sim."""

    name: str
    can_remap: bool  # restore onto another GPU (CUcheckpointRestoreArgs.gpuPairs)

    def state(self, pid: int) -> ProcessState:
        """The process's state; NotCudaProcess when the driver knows no CUDA context for it."""
        ...

    def lock(self, pid: int, *, timeout: float) -> None:
        """Block further CUDA calls; LockTimeout (process still running) after `timeout` s."""
        ...

    def checkpoint(self, pid: int) -> None:
        """Copy device memory to host and release the GPU (LOCKED -> CHECKPOINTED)."""
        ...

    def restore(self, pid: int, *, remap: Mapping[GpuUuid, GpuUuid] | None = None) -> None:
        """Copy memory back (CHECKPOINTED -> LOCKED), optionally onto other GPUs by UUID."""
        ...

    def unlock(self, pid: int) -> None:
        """Let CUDA calls run again (LOCKED -> RUNNING)."""
        ...

    def checkpointed_on(self, pid: int) -> dict[int, int] | None:
        """GPU index -> bytes a checkpointed process will need back, where the engine can tell."""
        ...
