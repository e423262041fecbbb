"""The checkpoint engine over `cuda.bindings.driver` (the `cuda-bindings` package, `gpuherd[cuda]`).

Chosen by feature detection, never by version: releases differ in what they export (restore is
missing in 13.0.0/13.0.1, CUcheckpointRestoreArgs in 13.3.0, gpuPairs before 13.0.2; states 4/5
appear in 13.4). A binding without the calls, a driver without the entry points (NOT_FOUND,
NOT_SUPPORTED, "Function ... not found") and a missing libcuda all become `NoCheckpointApi`.
This is the only module that touches `cuda.bindings`.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Mapping
from typing import Any

from gpuherd.checkpoint.base import (
    EngineFailed,
    IllegalState,
    LockTimeout,
    NoCheckpointApi,
    NotCudaProcess,
    ProcessState,
)
from gpuherd.ids import GpuUuid

__all__ = ["BindingsEngine", "load_driver"]

# CUresult codes from cuda.h; compared as ints so any binding's enum type works.
SUCCESS = 0
INVALID_VALUE = 1
OUT_OF_MEMORY = 2
NOT_INITIALIZED = 3
NO_DEVICE = 100
OPERATING_SYSTEM = 304
ILLEGAL_STATE = 401
NOT_FOUND = 500
NOT_READY = 600
NOT_PERMITTED = 800
NOT_SUPPORTED = 801
TIMEOUT = 909

REQUIRED = (
    "cuInit",
    "cuCheckpointProcessGetState",
    "cuCheckpointProcessLock",
    "cuCheckpointProcessCheckpoint",
    "cuCheckpointProcessRestore",
    "cuCheckpointProcessUnlock",
    "CUcheckpointLockArgs",
)
REMAP = ("CUcheckpointRestoreArgs", "CUcheckpointGpuPair", "CUuuid")

# Steps where "invalid argument" means the pid has no CUDA context; later it means a bad call.
_ASKS_FOR_CONTEXT = ("get the state of", "lock")

_INSTALL_HINT = (
    "install gpuherd[cuda] (cuda-bindings >= 13.0.2 or 12.8+) on a host with NVIDIA driver "
    "r570 or newer, or put NVIDIA's cuda-checkpoint binary on PATH"
)


def load_driver() -> Any:
    """Import `cuda.bindings.driver`; NoCheckpointApi when the package is not installed."""
    try:
        from cuda.bindings import driver
    except ImportError as exc:
        raise NoCheckpointApi(
            f"the cuda-bindings package is not importable ({exc})", _INSTALL_HINT
        ) from None
    return driver


def _binding_version() -> str:
    package = sys.modules.get("cuda.bindings")
    return str(getattr(package, "__version__", "unknown version"))


class BindingsEngine:
    """cuCheckpointProcess* through cuda.bindings; `driver` is the module (tests pass a fake)."""

    name = "cuda-bindings"

    def __init__(self, driver: Any = None) -> None:
        self._driver = load_driver() if driver is None else driver
        missing = [name for name in REQUIRED if not hasattr(self._driver, name)]
        if missing:
            raise NoCheckpointApi(
                f"cuda-bindings {_binding_version()} lacks {', '.join(missing)}",
                _INSTALL_HINT,
            )
        self.can_remap = all(hasattr(self._driver, name) for name in REMAP) and hasattr(
            self._driver.CUcheckpointRestoreArgs(), "gpuPairs"
        )
        err, *_ = self._invoke("cuInit", 0)
        if err in (NO_DEVICE, NOT_INITIALIZED):
            raise NoCheckpointApi(
                f"the CUDA driver found no usable GPU ({self._error_text(err)})",
                "check `nvidia-smi` and `gpuherd doctor`",
            )
        if err != SUCCESS:
            self._raise(err, "initialise CUDA", 0)

    # --- the choke point ------------------------------------------------------------------

    def _invoke(self, func: str, *args: Any) -> tuple[int, Any]:
        """Call driver.<func>; returns (CUresult as int, value or None)."""
        try:
            result = getattr(self._driver, func)(*args)
        except RuntimeError as exc:
            text = str(exc)
            if "libcuda" in text or "dlopen" in text:
                raise NoCheckpointApi(
                    f"libcuda was not found: {text}",
                    "install the NVIDIA driver (r570+); in a container use the NVIDIA runtime; "
                    "`gpuherd doctor` shows what is missing",
                ) from None
            if "not found" in text:
                raise NoCheckpointApi(
                    f"this driver has no checkpoint API ({text})",
                    "upgrade the NVIDIA driver to r570 or newer",
                ) from None
            raise EngineFailed(f"{func} failed: {text}") from None
        items = tuple(result) if isinstance(result, tuple) else (result,)
        return int(items[0]), (items[1] if len(items) > 1 else None)

    def _error_text(self, err: int) -> str:
        getter = getattr(self._driver, "cuGetErrorString", None)
        if getter is not None:
            try:
                code, text = getter(err)
                if int(code) == SUCCESS and text:
                    return text.decode() if isinstance(text, bytes) else str(text)
            except (RuntimeError, TypeError, ValueError):
                pass
        return f"CUresult {err}"

    def _raise(self, err: int, action: str, pid: int) -> None:
        text = self._error_text(err)
        if err in (NOT_FOUND, NOT_SUPPORTED):
            raise NoCheckpointApi(
                f"this driver has no checkpoint API ({action}: {text})",
                "upgrade the NVIDIA driver to r570 or newer; MIG and MPS are not supported",
            )
        if err == ILLEGAL_STATE:
            raise IllegalState(f"cannot {action} process {pid}: {text}")
        if err in (INVALID_VALUE, NOT_INITIALIZED) and action in _ASKS_FOR_CONTEXT:
            raise NotCudaProcess(f"process {pid} is not a CUDA process the driver knows ({text})")
        if err == OUT_OF_MEMORY:
            raise EngineFailed(
                f"{action} of process {pid} ran out of GPU memory ({text}); the driver may have "
                "left it unrecoverable"
            )
        if err in (NOT_PERMITTED, OPERATING_SYSTEM):
            raise EngineFailed(
                f"cannot {action} process {pid}: {text} (the driver needs root and persistence "
                "mode: `sudo nvidia-smi -pm 1`)"
            )
        raise EngineFailed(f"cannot {action} process {pid}: {text}")

    def _check(self, func: str, action: str, pid: int, *args: Any) -> Any:
        err, value = self._invoke(func, pid, *args)
        if err != SUCCESS:
            self._raise(err, action, pid)
        return value

    # --- the engine -------------------------------------------------------------------------

    def state(self, pid: int) -> ProcessState:
        value = self._check("cuCheckpointProcessGetState", "get the state of", pid)
        return ProcessState.from_code(int(value))

    def lock(self, pid: int, *, timeout: float) -> None:
        args = self._driver.CUcheckpointLockArgs()
        args.timeoutMs = max(1, round(timeout * 1000)) if timeout > 0 else 0
        err, _ = self._invoke("cuCheckpointProcessLock", pid, args)
        if err in (TIMEOUT, NOT_READY):
            raise LockTimeout(
                f"process {pid} did not reach a lockable point within {timeout:g}s; it was left "
                "running"
            )
        if err != SUCCESS:
            self._raise(err, "lock", pid)

    def checkpoint(self, pid: int) -> None:
        self._check("cuCheckpointProcessCheckpoint", "checkpoint", pid, None)

    def restore(self, pid: int, *, remap: Mapping[GpuUuid, GpuUuid] | None = None) -> None:
        keep: list[Any] = []  # UUID buffers the driver reads during the call
        args = self._restore_args(remap, keep) if remap else None
        self._check("cuCheckpointProcessRestore", "restore", pid, args)

    def unlock(self, pid: int) -> None:
        self._check("cuCheckpointProcessUnlock", "unlock", pid, None)

    def checkpointed_on(self, pid: int) -> dict[int, int] | None:
        return None  # the driver does not say; gpuherd's own record does

    def _restore_args(self, remap: Mapping[GpuUuid, GpuUuid], keep: list[Any]) -> Any:
        if not self.can_remap:
            raise NoCheckpointApi(
                f"cuda-bindings {_binding_version()} cannot restore onto another GPU "
                "(no CUcheckpointRestoreArgs.gpuPairs)",
                "upgrade cuda-bindings to 13.0.2 or newer",
            )
        d = self._driver
        pairs = []
        for old, new in remap.items():
            pair = d.CUcheckpointGpuPair()
            pair.oldUuid = self._uuid(old, keep)
            pair.newUuid = self._uuid(new, keep)
            pairs.append(pair)
        args = d.CUcheckpointRestoreArgs()
        args.gpuPairs = pairs
        args.gpuPairsCount = len(pairs)
        return args

    def _uuid(self, text: str, keep: list[Any]) -> Any:
        # NVML writes "GPU-xxxxxxxx-xxxx-..."; CUuuid holds the 16 raw bytes.
        raw = bytes.fromhex(text.removeprefix("GPU-").replace("-", ""))
        if len(raw) != 16:
            raise EngineFailed(f"not a GPU UUID: {text!r}")
        buf = ctypes.create_string_buffer(raw, 16)
        keep.append(buf)
        return self._driver.CUuuid(ctypes.addressof(buf))
