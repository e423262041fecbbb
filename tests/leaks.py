"""Finding processes a test left behind: anything whose command line, environment or working
directory points into the run's temporary directory (simulated GPUs, state dirs, logs)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def strays(under: Path) -> dict[int, str]:
    """pid -> command line of every live process (other than this one) tied to `under`."""
    root = os.fsencode(str(under).rstrip("/"))
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        stat = _read(f"/proc/{entry}/stat")
        if not stat or stat.rsplit(b")", 1)[-1].split()[0] == b"Z":
            continue  # gone, or a zombie its parent will reap
        cmdline = _read(f"/proc/{entry}/cmdline")
        try:
            cwd = os.fsencode(os.readlink(f"/proc/{entry}/cwd"))
        except OSError:
            cwd = b""
        places = [cmdline, _read(f"/proc/{entry}/environ")]
        tied = any(root + b"/" in p or root + b"\0" in p or p.endswith(root) for p in places) or (
            cwd == root or cwd.startswith(root + b"/")
        )
        if tied:
            found[int(entry)] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    return found


def end(pids: list[int], grace: float = 3.0) -> None:
    """TERM, then KILL whatever still runs after `grace`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                continue
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
            time.sleep(0.05)
