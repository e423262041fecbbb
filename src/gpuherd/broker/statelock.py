"""One broker per state dir: an exclusive lock held for the broker's life.

Two brokers on one journal would run jobs twice and admit into each other's freed room. The
lock is a `flock` on `STATE/broker.lock`, released by the kernel when the process dies (a
kill -9 included), so a stale lock file never blocks a restart.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class StateLocked(Exception):
    pass


def lock_state(state_dir: Path) -> int:
    """Take the lock; returns the open descriptor, to keep for the process's life."""
    path = state_dir / "broker.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise StateLocked(
            f"another broker (pid {holder}) already uses {state_dir}; one state dir, one broker"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
