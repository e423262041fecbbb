"""Facts about OS processes read straight from /proc, under a root that tests can replace.

Reading the few fields we need with os.read is several times cheaper than building psutil
objects, which matters when one snapshot checks a thousand simulated holders.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/")


@dataclass(frozen=True, slots=True)
class ProcStat:
    pid: int
    state: str  # R, S, D, Z, ...
    ppid: int
    start_ticks: int  # clock ticks after boot: with pid, identifies one process for its lifetime


def _read(path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, 65536)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_stat(pid: int, root: Path = ROOT) -> ProcStat | None:
    """Parse /proc/PID/stat; None when the process does not exist (or cannot be read)."""
    raw = _read(f"{root}/proc/{pid}/stat")
    if not raw:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    end = raw.rfind(b")")
    fields = raw[end + 2 :].split()
    try:
        return ProcStat(pid, fields[0].decode(), int(fields[1]), int(fields[19]))
    except (IndexError, ValueError):
        return None


def start_ticks(pid: int, root: Path = ROOT) -> int | None:
    """Start time of a live process, or None if it is gone or a zombie (it holds nothing)."""
    stat = read_stat(pid, root)
    if stat is None or stat.state in ("Z", "X"):
        return None
    return stat.start_ticks


def read_cmdline(pid: int, root: Path = ROOT) -> tuple[str, ...] | None:
    raw = _read(f"{root}/proc/{pid}/cmdline")
    if raw is None:
        return None
    parts = raw.rstrip(b"\0").split(b"\0")
    return tuple(p.decode(errors="replace") for p in parts) if raw else ()


def read_comm(pid: int, root: Path = ROOT) -> str | None:
    raw = _read(f"{root}/proc/{pid}/comm")
    return raw.decode(errors="replace").strip() if raw else None


def read_cgroup(pid: int, root: Path = ROOT) -> str | None:
    raw = _read(f"{root}/proc/{pid}/cgroup")
    return raw.decode(errors="replace") if raw is not None else None


def is_ancestor(ancestor: int, pid: int, root: Path = ROOT, *, max_depth: int = 64) -> bool:
    """True if `ancestor` is `pid` or one of its parents (a service's worker children count)."""
    current = pid
    for _ in range(max_depth):
        if current == ancestor:
            return True
        stat = read_stat(current, root)
        if stat is None or stat.ppid <= 0:
            return False
        current = stat.ppid
    return False
