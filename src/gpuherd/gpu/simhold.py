"""The simulated workload: a process that takes simulated VRAM and holds it until told to stop.

It behaves like a CUDA program in the ways gpuherd depends on: it fails with "out of memory" when
the device is full, its memory disappears when it dies however it dies, and while a checkpoint
tool has it locked or checkpointed it keeps running without allocating more.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TextIO

from gpuherd.gpu.sim import SimError, SimHost, SimIllegalState
from gpuherd.units import format_bytes

_STEPS = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class HoldRequest:
    sim_dir: Path
    gpu: int
    vram: int
    name: str | None = None
    ramp: float = 0.0  # seconds to reach `vram`, in equal steps
    hold_for: float | None = None  # then exit 0; None: until SIGTERM/SIGINT
    util: int = 0
    pid_file: Path | None = None


def hold(req: HoldRequest, *, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run the holder in this process; returns the exit code (0 stopped cleanly, 1 OOM/error)."""
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    pid = os.getpid()
    host = SimHost(req.sim_dir)
    try:
        if req.pid_file is not None:
            req.pid_file.write_text(f"{pid}\n")
        if not _ramp_up(host, req, pid, stop, err):
            return 1
        label = f" as {req.name}" if req.name else ""
        print(
            f"holding {format_bytes(req.vram)} on GPU {req.gpu}{label} (pid {pid})",
            file=out,
            flush=True,
        )
        deadline = None if req.hold_for is None else time.monotonic() + req.hold_for
        while not stop.is_set():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            stop.wait(timeout=1.0 if remaining is None else min(remaining, 1.0))
        return 0
    finally:
        host.forget(pid=pid)
        host.close()
        if req.pid_file is not None:
            req.pid_file.unlink(missing_ok=True)


def _ramp_up(host: SimHost, req: HoldRequest, pid: int, stop: threading.Event, err: TextIO) -> bool:
    steps = _STEPS if req.ramp > 0 and req.vram >= _STEPS else 1
    chunk, remainder = divmod(req.vram, steps)
    for step in range(steps):
        if stop.is_set():
            return True
        nbytes = chunk + (remainder if step == steps - 1 else 0)
        while True:
            try:
                host.allocate(pid=pid, gpu=req.gpu, nbytes=nbytes, name=req.name, util=req.util)
                break
            except SimIllegalState as exc:
                # A locked/checkpointed process blocks in its next CUDA call until unlocked.
                if host.state_of(pid) in ("locked", "checkpointed"):
                    if stop.wait(0.05):
                        return True
                    continue
                print(f"gpuherd sim hold: {exc}", file=err, flush=True)
                return False
            except SimError as exc:
                print(f"gpuherd sim hold: {exc}", file=err, flush=True)
                return False
        if steps > 1 and step < steps - 1 and stop.wait(req.ramp / steps):
            return True
    return True
