"""A fake of `cuda.bindings.driver` for the checkpoint calls, backed by the simulated driver.

Same names, same calling convention (every call returns a tuple whose first item is a CUresult;
argument objects are mutable structs; CUuuid is built from the address of 16 bytes), same error
codes and cuGetErrorString texts. Tests remove attributes to imitate older releases.
"""

from __future__ import annotations

import ctypes
from enum import IntEnum
from pathlib import Path
from typing import Any

from gpuherd.gpu.sim import SimHost, SimIllegalState, SimNoSuchProcess, SimOutOfMemory

__version__ = "13.5.0-fake"

SIM_DIR: Path | None = None  # the simulated host the fake driver acts on
BUSY: set[int] = set()  # pids sitting in a long kernel: a lock with a timeout expires
NO_API = False  # a driver without the checkpoint entry points
STATE_OVERRIDE: dict[int, int] = {}  # raw CUprocessState codes to report (13.4's 4/5)
calls: list[tuple[str, Any]] = []


class CUresult(IntEnum):
    CUDA_SUCCESS = 0
    CUDA_ERROR_INVALID_VALUE = 1
    CUDA_ERROR_OUT_OF_MEMORY = 2
    CUDA_ERROR_NOT_INITIALIZED = 3
    CUDA_ERROR_NO_DEVICE = 100
    CUDA_ERROR_OPERATING_SYSTEM = 304
    CUDA_ERROR_ILLEGAL_STATE = 401
    CUDA_ERROR_NOT_FOUND = 500
    CUDA_ERROR_NOT_READY = 600
    CUDA_ERROR_NOT_PERMITTED = 800
    CUDA_ERROR_NOT_SUPPORTED = 801
    CUDA_ERROR_TIMEOUT = 909


class CUprocessState(IntEnum):
    CU_PROCESS_STATE_RUNNING = 0
    CU_PROCESS_STATE_LOCKED = 1
    CU_PROCESS_STATE_CHECKPOINTED = 2
    CU_PROCESS_STATE_FAILED = 3


_TEXT = {
    CUresult.CUDA_SUCCESS: b"no error",
    CUresult.CUDA_ERROR_INVALID_VALUE: b"invalid argument",
    CUresult.CUDA_ERROR_OUT_OF_MEMORY: b"out of memory",
    CUresult.CUDA_ERROR_NOT_INITIALIZED: b"initialization error",
    CUresult.CUDA_ERROR_NO_DEVICE: b"no CUDA-capable device is detected",
    CUresult.CUDA_ERROR_OPERATING_SYSTEM: b"OS call failed or operation not supported on this OS",
    CUresult.CUDA_ERROR_ILLEGAL_STATE: b"the operation cannot be performed in the present state",
    CUresult.CUDA_ERROR_NOT_FOUND: b"named symbol not found",
    CUresult.CUDA_ERROR_NOT_READY: b"device not ready",
    CUresult.CUDA_ERROR_NOT_PERMITTED: b"operation not permitted",
    CUresult.CUDA_ERROR_NOT_SUPPORTED: b"operation not supported",
    CUresult.CUDA_ERROR_TIMEOUT: b"the operation timed out",
}


class CUcheckpointLockArgs:
    def __init__(self) -> None:
        self.timeoutMs = 0
        self.reserved0 = 0
        self.reserved1 = [0] * 7


class CUuuid:
    def __init__(self, ptr: int = 0) -> None:
        self.bytes = ctypes.string_at(ptr, 16) if ptr else bytes(16)


class CUcheckpointGpuPair:
    def __init__(self) -> None:
        self.oldUuid = CUuuid()
        self.newUuid = CUuuid()


class CUcheckpointRestoreArgs:
    def __init__(self) -> None:
        self.gpuPairs: list[CUcheckpointGpuPair] = []
        self.gpuPairsCount = 0


def _host() -> SimHost:
    assert SIM_DIR is not None, "set fake_cuda_driver.SIM_DIR first"
    return SimHost(SIM_DIR)


def _act(name: str, pid: int, action: Any) -> tuple[CUresult]:
    calls.append((name, pid))
    if NO_API:
        return (CUresult.CUDA_ERROR_NOT_SUPPORTED,)
    with _host() as host:
        try:
            action(host)
        except SimNoSuchProcess:
            return (CUresult.CUDA_ERROR_INVALID_VALUE,)
        except SimIllegalState:
            return (CUresult.CUDA_ERROR_ILLEGAL_STATE,)
        except SimOutOfMemory:
            return (CUresult.CUDA_ERROR_OUT_OF_MEMORY,)
    return (CUresult.CUDA_SUCCESS,)


def cuInit(flags: int) -> tuple[CUresult]:
    return (CUresult.CUDA_SUCCESS,)


def cuGetErrorString(error: CUresult) -> tuple[CUresult, bytes]:
    return (CUresult.CUDA_SUCCESS, _TEXT[CUresult(error)])


def cuCheckpointProcessGetState(pid: int) -> tuple[CUresult, Any]:
    calls.append(("cuCheckpointProcessGetState", pid))
    if NO_API:
        return (CUresult.CUDA_ERROR_NOT_SUPPORTED, None)
    if pid in STATE_OVERRIDE:
        return (CUresult.CUDA_SUCCESS, STATE_OVERRIDE[pid])
    with _host() as host:
        try:
            state = host.state_of(pid)
        except SimNoSuchProcess:
            return (CUresult.CUDA_ERROR_INVALID_VALUE, None)
    codes = {"running": 0, "locked": 1, "checkpointed": 2, "failed": 3}
    return (CUresult.CUDA_SUCCESS, CUprocessState(codes[state]))


def cuCheckpointProcessLock(pid: int, args: CUcheckpointLockArgs | None) -> tuple[CUresult]:
    assert args is None or isinstance(args, CUcheckpointLockArgs)
    if pid in BUSY and args is not None and args.timeoutMs > 0:
        calls.append(("cuCheckpointProcessLock", pid))
        return (CUresult.CUDA_ERROR_TIMEOUT,)
    return _act("cuCheckpointProcessLock", pid, lambda h: h.lock(pid))


def cuCheckpointProcessCheckpoint(pid: int, args: None) -> tuple[CUresult]:
    return _act("cuCheckpointProcessCheckpoint", pid, lambda h: h.checkpoint(pid))


def cuCheckpointProcessRestore(pid: int, args: CUcheckpointRestoreArgs | None) -> tuple[CUresult]:
    def restore(host: SimHost) -> None:
        onto: dict[int, int] = {}
        if args is not None:
            assert args.gpuPairsCount == len(args.gpuPairs)
            by_raw = {
                bytes.fromhex(d.uuid.removeprefix("GPU-").replace("-", "")): d.index
                for d in host.snapshot().devices
            }
            for pair in args.gpuPairs:
                onto[by_raw[pair.oldUuid.bytes]] = by_raw[pair.newUuid.bytes]
        host.restore(pid, onto=onto)

    return _act("cuCheckpointProcessRestore", pid, restore)


def cuCheckpointProcessUnlock(pid: int, args: None) -> tuple[CUresult]:
    return _act("cuCheckpointProcessUnlock", pid, lambda h: h.unlock(pid))
