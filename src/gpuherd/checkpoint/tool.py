"""The checkpoint engine over NVIDIA's `cuda-checkpoint` binary on PATH.

`cuda-checkpoint --get-state --pid P` prints the state; `--action lock|checkpoint|restore|unlock
--pid P [--timeout MS]` performs one step (the timeout applies to lock only). Failures print
`Could not <action> ... process ID P: "<cuGetErrorString text>"` and exit non-zero; the quoted
driver text is what we classify. The binary cannot remap GPUs, so `can_remap` is False.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from gpuherd.checkpoint.base import (
    EngineFailed,
    IllegalState,
    LockTimeout,
    NoCheckpointApi,
    NotCudaProcess,
    ProcessState,
)
from gpuherd.ids import GpuUuid

__all__ = ["ToolEngine", "find_tool"]

BINARY = "cuda-checkpoint"
# get-state has been seen to take 0.4-7 s on real drivers: budgets in seconds, generously.
STATE_TIMEOUT_S = 60.0
# Checkpoint and restore copy all device memory over the host link.
COPY_TIMEOUT_S = 1800.0

_QUOTED = re.compile(r'"([^"]+)"')
# cuGetErrorString texts, matched case-insensitively inside the tool's message.
_NO_API = (
    "operation not supported on this os",
    "operation not supported",
    "named symbol not found",
)
_NOT_CUDA = ("invalid argument", "initialization error")
_ILLEGAL = ("cannot be performed in the present state",)
_TIMEOUT = ("timed out", "timeout", "device not ready")
_NO_DEVICE = ("no cuda-capable device",)
_PERMISSION = ("operation not permitted", "os call failed")


def find_tool() -> Path:
    """The cuda-checkpoint binary on PATH, or NoCheckpointApi."""
    found = shutil.which(BINARY)
    if found is None:
        raise NoCheckpointApi(
            f"{BINARY} is not on PATH",
            "install it from NVIDIA's cuda-checkpoint repository (driver r570+), or install "
            "gpuherd[cuda] for the driver API",
        )
    return Path(found)


class ToolEngine:
    name = BINARY
    can_remap = False

    def __init__(self, binary: Path | None = None) -> None:
        self.binary = binary or find_tool()

    def _run(self, args: list[str], *, timeout: float) -> str:
        try:
            done = subprocess.run(
                [str(self.binary), *args],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError:
            raise NoCheckpointApi(
                f"{self.binary} disappeared", "reinstall cuda-checkpoint"
            ) from None
        except subprocess.TimeoutExpired:
            raise EngineFailed(
                f"{BINARY} {' '.join(args)} did not answer within {timeout:g}s"
            ) from None
        if done.returncode != 0:
            self._raise(args, (done.stderr or done.stdout).strip())
        return done.stdout.strip()

    @staticmethod
    def _raise(args: list[str], message: str) -> None:
        quoted = _QUOTED.search(message)
        text = (quoted.group(1) if quoted else message).lower()
        pid = args[args.index("--pid") + 1]
        asks_context = "--get-state" in args or "lock" in args
        detail = message or f"{BINARY} failed without a message"
        if any(s in text for s in _PERMISSION):
            raise EngineFailed(
                f"{detail} (the driver needs root and persistence mode: `sudo nvidia-smi -pm 1`)"
            )
        if any(s in text for s in _NO_DEVICE):
            raise NoCheckpointApi(detail, "check `nvidia-smi` and `gpuherd doctor`")
        if any(s in text for s in _NO_API):
            raise NoCheckpointApi(
                f"this driver has no checkpoint API ({detail})",
                "upgrade the NVIDIA driver to r570 or newer; MIG and MPS are not supported",
            )
        if any(s in text for s in _ILLEGAL):
            raise IllegalState(detail)
        if "lock" in args and any(s in text for s in _TIMEOUT):
            raise LockTimeout(
                f"process {pid} could not be locked in time ({detail}); it was left running"
            )
        if asks_context and any(s in text for s in _NOT_CUDA):
            raise NotCudaProcess(f"process {pid} is not a CUDA process the driver knows ({detail})")
        raise EngineFailed(detail)

    def state(self, pid: int) -> ProcessState:
        out = self._run(["--get-state", "--pid", str(pid)], timeout=STATE_TIMEOUT_S)
        word = out.split()[-1].lower() if out else ""
        try:
            return ProcessState(word)
        except ValueError:
            raise EngineFailed(f"{BINARY} printed an unknown state: {out!r}") from None

    def lock(self, pid: int, *, timeout: float) -> None:
        args = ["--action", "lock", "--pid", str(pid)]
        if timeout > 0:
            args += ["--timeout", str(max(1, round(timeout * 1000)))]
        self._run(args, timeout=timeout + STATE_TIMEOUT_S)

    def checkpoint(self, pid: int) -> None:
        self._run(["--action", "checkpoint", "--pid", str(pid)], timeout=COPY_TIMEOUT_S)

    def restore(self, pid: int, *, remap: Mapping[GpuUuid, GpuUuid] | None = None) -> None:
        if remap:
            raise NoCheckpointApi(
                f"{BINARY} cannot restore onto another GPU",
                "install gpuherd[cuda] (cuda-bindings >= 13.0.2) for GPU remapping",
            )
        self._run(["--action", "restore", "--pid", str(pid)], timeout=COPY_TIMEOUT_S)

    def unlock(self, pid: int) -> None:
        self._run(["--action", "unlock", "--pid", str(pid)], timeout=STATE_TIMEOUT_S)

    def checkpointed_on(self, pid: int) -> dict[int, int] | None:
        return None
