"""Fault injection for the crash tests: GPUHERD_CRASH_AT=<name> kills the broker at that point,
as a power cut or kill -9 would. Never set in normal operation."""

from __future__ import annotations

import os
import signal

CRASH_POINTS = (
    "after_intent",
    "after_release",
    "job_running",
    "after_exit",
    "mid_restore",
    "restore_started",
)


def crash_point(name: str) -> None:
    if os.environ.get("GPUHERD_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
