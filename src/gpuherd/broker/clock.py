"""Time for the broker: one injectable clock, and the one helper that waits on a condition.

Tests hand in a clock whose `sleep` advances a counter, so backoffs and timeouts are checked
without sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Clock:
    now: Callable[[], float] = time.time  # wall time: journal stamps, schedules, backoff
    monotonic: Callable[[], float] = time.monotonic  # deadlines
    sleep: Callable[[float], None] = time.sleep


SYSTEM = Clock()


def wait_until(
    done: Callable[[], bool], *, timeout: float, poll: float, clock: Clock = SYSTEM
) -> bool:
    """True as soon as `done()` is, False once `timeout` seconds passed without it. `done` is
    always asked at least once, and once more at the deadline."""
    deadline = clock.monotonic() + timeout
    while True:
        if done():
            return True
        if clock.monotonic() >= deadline:
            return False
        clock.sleep(max(0.0, min(poll, deadline - clock.monotonic())))
