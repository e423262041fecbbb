"""The pressure sampler: between engine steps, a cheap reading of the guarded GPUs' free memory
that wakes the engine the moment it crosses a line the guard cares about.

A step reads every process on every GPU, probes tenants and writes the journal: too much to do
ten times a second. The guard only needs to notice soon that free memory crossed its pressure
line (or the line above which a released tenant may return); the timers, the decision and every
action stay in the step, which this thread merely calls early. Missing a crossing costs at most
one poll, as it did before the sampler existed, so a failing reading is ignored.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping

from gpuherd.broker.guarding import Watch


class PressureSampler:
    def __init__(
        self,
        read: Callable[[], Mapping[int, int]],
        watch: Callable[[], Mapping[int, Watch]],
        wake: Callable[[], None],
        interval: float,
    ) -> None:
        self._read = read
        self._watch = watch
        self._wake = wake
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._woken: Mapping[int, Watch] | None = None  # the watch a wake was already sent for
        self.wakes = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="gpuherd-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def sample(self) -> bool:
        """One reading; True when it woke the engine."""
        watch = self._watch()
        if not watch or watch is self._woken:
            return False  # nothing guarded yet, or the step this crossing asked for is due
        free: Mapping[int, int] = {}
        with contextlib.suppress(Exception):  # the step reads again, and reports what fails
            free = self._read()
        if any(i in free and w.crossed(free[i]) for i, w in watch.items()):
            self._woken = watch
            self.wakes += 1
            self._wake()
            return True
        return False

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()
