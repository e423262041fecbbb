"""Submissions from the API's event loop, written by one thread in batches.

Under load the cost of a submission is not its SQLite insert but the hops around it: a worker
thread per request, a lock handoff per request, a wake of the engine per request. Here a
request costs the event loop one list append; the writer thread takes everything pending,
writes it in one transaction (one fsync), then settles the batch's futures with one call into
each waiting loop and wakes the engine once. A submission is acknowledged only once durable.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass

from gpuherd.broker.journal import Journal
from gpuherd.broker.submission import Submission
from gpuherd.ids import JobId

Result = JobId | Exception


@dataclass(frozen=True, slots=True)
class _Waiting:
    submission: Submission
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[JobId]


def _settle(settled: list[tuple[asyncio.Future[JobId], Result]]) -> None:
    for future, result in settled:
        if future.done():  # the request was cancelled (its client went away)
            continue
        if isinstance(result, Exception):
            future.set_exception(result)
        else:
            future.set_result(result)


class Intake:
    def __init__(self, journal: Journal, written: Callable[[], None]) -> None:
        self._journal = journal
        self._written = written  # the daemon's wake: new jobs to schedule
        self._cond = threading.Condition()
        self._waiting: list[_Waiting] = []
        self._thread: threading.Thread | None = None
        self.batches = 0

    async def submit(self, submission: Submission) -> JobId:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[JobId] = loop.create_future()
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="gpuherd-intake", daemon=True
                )
                self._thread.start()
            self._waiting.append(_Waiting(submission, loop, future))
            self._cond.notify()
        return await future

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._waiting:
                    self._cond.wait()
                batch, self._waiting = self._waiting, []
            self._write(batch)

    def _write(self, batch: list[_Waiting]) -> None:
        results: list[Result]
        try:
            results = list(self._journal.submit_many([w.submission for w in batch]))
        except Exception as exc:  # none was written: each caller gets the error
            results = [exc] * len(batch)
        self.batches += 1
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[JobId], Result]]] = {}
        for waiting, result in zip(batch, results, strict=True):
            by_loop.setdefault(waiting.loop, []).append((waiting.future, result))
        for loop, settled in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, settled)
            except RuntimeError:  # that loop has closed: no one waits for these any more
                continue
        if any(not isinstance(r, Exception) for r in results):
            self._written()
