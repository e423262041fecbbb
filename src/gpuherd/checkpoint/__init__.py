"""CUDA checkpoint: move a running process's GPU memory to host RAM and back, in place.

Engines (chosen by feature detection): `cuda.bindings.driver` (bindings.py), the
`cuda-checkpoint` binary (tool.py), and the simulated driver (sim.py). `ops.suspend` and
`ops.resume` wrap them in the safety checks; `records` keeps what a suspend must remember.
"""

from gpuherd.checkpoint.base import (
    CheckpointEngine,
    CheckpointError,
    EngineFailed,
    IllegalState,
    LockTimeout,
    NoCheckpointApi,
    NotCudaProcess,
    NotEnoughVram,
    ProcessState,
    Refused,
    restore_seconds,
)
from gpuherd.checkpoint.ops import open_engine, resume, suspend
from gpuherd.checkpoint.records import Resumed, Suspended

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
    "Resumed",
    "Suspended",
    "open_engine",
    "restore_seconds",
    "resume",
    "suspend",
]
