"""The broker daemon: the engine stepping in a background thread, with a clean stop.

`stop()` lets the current step finish (a release or restore in progress completes: steps are
synchronous); job processes run in their own process groups and are adopted again by the next
start. All engine access is serialised by one lock, so API threads and the loop never race.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from gpuherd.broker.engine import Engine
from gpuherd.gpu.base import GpuSnapshot

T = TypeVar("T")


class Daemon:
    def __init__(self, engine: Engine, *, poll_interval: float = 1.0) -> None:
        self.engine = engine
        self.poll_interval = poll_interval
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self._wake = threading.Event()
        self.log: Callable[[dict[str, object]], None] | None = None  # set once it may print
        self._logged = 0  # id of the last event handed to `log`
        engine.notify = self.wake  # a job process exits: restore its tenants now, not next poll
        self.ready = threading.Event()
        self._thread: threading.Thread | None = None

    def locked(self, fn: Callable[[], T]) -> T:
        with self.lock:
            return fn()

    def start(self) -> None:
        with self.lock:
            self.engine.replay()
        self._thread = threading.Thread(target=self._loop, name="gpuherd-engine", daemon=True)
        self._thread.start()

    def flush_log(self) -> None:
        """Hand the events written since the last call to `log`, as structured records."""
        if self.log is None:
            return
        for e in self.engine.journal.events_after(self._logged):
            record: dict[str, object] = {"event": e.kind, "at": round(e.at, 3)}
            record |= {"job": e.job_id, "tenant": e.tenant, "message": e.message}
            self.log({k: v for k, v in record.items() if v is not None})
            self._logged = e.id

    @property
    def last_snapshot(self) -> GpuSnapshot | None:
        """The GPU reading of the latest step (for status and metrics)."""
        return self.engine.last_snapshot

    def wake(self) -> None:
        """Step now (a submission, a cancel, a job exit) instead of at the next poll."""
        self._wake.set()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            with self.lock:
                try:
                    self.engine.step()
                except Exception as exc:
                    self.engine.journal.record("engine_error", f"{type(exc).__name__}: {exc}")
            self.ready.set()
            self.flush_log()
            self._wake.wait(self.poll_interval)
            self._wake.clear()

    def stop(self, timeout: float = 30.0) -> None:
        self.stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.flush_log()
