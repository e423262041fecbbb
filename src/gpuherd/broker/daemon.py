"""The broker daemon: the engine stepping in a background thread, with a clean stop.

`stop()` lets the current step finish (a release or restore in progress completes: steps are
synchronous); job processes run in their own process groups and are followed again by the next
start. Only the loop drives the engine; submissions and cancels never wait for it. A step that
fails is reported (an event, `status`, a metric) and retried with backoff, not in a hot loop.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable

from gpuherd.broker.continuity import write_mark
from gpuherd.broker.engine import Engine
from gpuherd.broker.sampling import PressureSampler
from gpuherd.broker.views import EngineHealth

_MAX_BACKOFF = 60.0
GIVE_UP_AFTER = 12  # failed steps in a row (about 8 minutes of backoff) before the process ends


def _recoverable(exc: Exception) -> bool:
    """A full disk or a busy database comes back by itself: wait for it, whatever it takes,
    keeping every restore obligation. Anything else that fails step after step is a fault the
    engine cannot contain."""
    return isinstance(exc, sqlite3.OperationalError | OSError)


class Daemon:
    def __init__(
        self, engine: Engine, *, poll_interval: float = 1.0, sample_interval: float = 0.0
    ) -> None:
        self.engine = engine
        self.poll_interval = poll_interval
        # Guarded GPUs' free memory read this often between steps (0: only at each step).
        self.sampler: PressureSampler | None = None
        if sample_interval > 0 and engine.guarding.guarded:
            backend = engine.backend
            guarding = engine.guarding
            self.sampler = PressureSampler(
                backend.memory_free, lambda: guarding.watch, self.wake, sample_interval
            )
        self.stopping = threading.Event()
        self._wake = threading.Event()
        self.log: Callable[[dict[str, object]], None] | None = None  # set once it may print
        self._logged = 0  # id of the last event handed to `log`
        engine.notify = self.wake  # a job process exits: restore its tenants now, not next poll
        self.ready = threading.Event()
        self.health = EngineHealth()
        self._streak = 0  # steps failed in a row
        self._marked_at = float("-inf")
        self._thread: threading.Thread | None = None
        self.fatal: str | None = None  # why the loop gave up
        # Called once from the loop when it gives up: the service stops the process with a
        # non-zero exit, so its manager restarts it (never a live API over a dead engine).
        self.on_fatal: Callable[[str], None] | None = None

    def start(self) -> None:
        self.engine.replay()
        self._thread = threading.Thread(target=self._loop, name="gpuherd-engine", daemon=True)
        self._thread.start()
        if self.sampler is not None:
            self.sampler.start()

    def flush_log(self) -> None:
        """Hand the events written since the last call to `log`, as structured records."""
        if self.log is None:
            return
        for e in self.engine.journal.events_after(self._logged):
            record: dict[str, object] = {"event": e.kind, "at": round(e.at, 3)}
            record |= {"job": e.job_id, "tenant": e.tenant, "message": e.message}
            self.log({k: v for k, v in record.items() if v is not None})
            self._logged = e.id

    def wake(self) -> None:
        """Step now (a submission, a cancel, a job exit) instead of at the next poll."""
        self._wake.set()

    def _step(self) -> float:
        """One step; returns how long to wait before the next."""
        try:
            self.engine.step()
        except Exception as exc:
            self._streak += 1
            if self._streak >= GIVE_UP_AFTER and not _recoverable(exc):
                self.fatal = f"{type(exc).__name__}: {exc}"
            backoff = min(_MAX_BACKOFF, self.poll_interval * 2 ** min(self._streak, 10))
            message = f"{type(exc).__name__}: {exc}"
            self.health = EngineHealth(False, message, self.health.errors_total + 1, backoff)
            # The journal itself may be what fails (a full disk): the status still says it.
            with contextlib.suppress(Exception):
                self.engine.journal.record("engine_error", f"{message} (retry in {backoff:g}s)")
            return float(backoff)
        self._streak = 0
        if not self.health.ok:
            self.health = EngineHealth(True, None, self.health.errors_total, None)
        return self.poll_interval

    def _loop(self) -> None:
        while not self.stopping.is_set():
            wait = self._step()
            if self.fatal is not None:
                with contextlib.suppress(Exception):
                    self.engine.journal.record("engine_stopped", self.fatal)
                if self.on_fatal is not None:
                    self.on_fatal(self.fatal)
                return
            self.ready.set()
            self.flush_log()
            self._mark()
            if wait > self.poll_interval:
                self.stopping.wait(wait)  # a failing step does not spin, even when woken
            else:
                self._wake.wait(wait)
            self._wake.clear()

    def _mark(self, *, now: bool = False) -> None:
        # At most once a second (it costs an fsync), and at stop. A full disk must not stop the
        # loop: the next step writes the mark again.
        if not now and time.monotonic() < self._marked_at + 1.0:
            return
        with contextlib.suppress(OSError, sqlite3.Error):
            write_mark(self.engine.state_dir, self.engine.journal)
            self._marked_at = time.monotonic()

    def stop(self, timeout: float = 30.0) -> None:
        if self.sampler is not None:
            self.sampler.stop()
        self.stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.flush_log()
        self._mark(now=True)
