"""The processes a demo starts, and how they all end, also on Ctrl-C.

Each runs in a session of its own, so a Ctrl-C in the terminal reaches the demo alone, which
then ends them in order (the brokers, then the cluster, which stops its pods). Pods run in
sessions of their own under the cluster process: whatever of them outlives the cluster is
killed by pid, from the process tree read before it stopped.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

START_TIMEOUT = 30.0  # seconds a process may take to print its readiness line


class DemoFailed(Exception):
    """The story did not run as expected; the message says which step and why."""


@dataclass
class Procs:
    """The processes started, by name, with their stderr in files under `logs`."""

    logs: Path
    env: dict[str, str]
    started: list[tuple[str, subprocess.Popen[str]]] = field(default_factory=list)
    output: dict[str, queue.Queue[str | None]] = field(default_factory=dict)

    def spawn(self, name: str, argv: list[str]) -> subprocess.Popen[str]:
        """Start it; a thread reads its stdout into `output[name]` (None at the end), so a full
        pipe never stalls it and a silent one never stalls the demo."""
        with (self.logs / f"{name}.stderr").open("w") as err:
            proc = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=err,
                stdin=subprocess.DEVNULL,
                text=True,
                env=self.env,
                start_new_session=True,
            )
        self.started.append((name, proc))
        lines: queue.Queue[str | None] = queue.Queue()
        self.output[name] = lines
        stream = proc.stdout
        assert stream is not None

        def read() -> None:
            try:
                for line in stream:
                    lines.put(line)
            except (OSError, ValueError):
                pass
            finally:
                lines.put(None)
                stream.close()

        threading.Thread(target=read, name=f"demo-{name}", daemon=True).start()
        return proc

    def first_line(self, name: str, want: str, timeout: float = START_TIMEOUT) -> str:
        """Its first stdout line, which must contain `want` (its readiness line)."""
        try:
            line = self.output[name].get(timeout=timeout)
        except queue.Empty:
            raise DemoFailed(f"{name} said nothing for {timeout:.0f}s: {self.tail(name)}") from None
        if line is None or want not in line:
            said = (line or "").strip() or "nothing"
            raise DemoFailed(f"{name} did not start (it said {said}): {self.tail(name)}")
        return line.strip()

    def tail(self, name: str, lines: int = 5) -> str:
        """The end of what it wrote to stderr, on one line."""
        with contextlib.suppress(OSError):
            text = (self.logs / f"{name}.stderr").read_text(errors="replace").strip()
            return " | ".join(text.splitlines()[-lines:]) or "(no stderr)"
        return "(no stderr)"

    def check_alive(self) -> None:
        for name, proc in self.started:
            if proc.poll() is not None:
                raise DemoFailed(f"{name} exited {proc.returncode}: {self.tail(name)}")

    def _descendants(self) -> set[psutil.Process]:
        # Our own children too: one an interrupt caught between its fork and its record in
        # `started` is ours all the same.
        found: set[psutil.Process] = set(psutil.Process().children(recursive=True))
        for _, proc in self.started:
            with contextlib.suppress(psutil.Error):
                found.update(psutil.Process(proc.pid).children(recursive=True))
        return found

    def end(self, last: str = "cluster") -> None:
        """Every process but `last` together, then `last`, then whatever any of them started
        that still runs. Signals wait meanwhile: a second Ctrl-C would leave processes
        behind."""
        ignored = _ignore_signals()
        try:
            family = self._descendants()
            _stop([p for n, p in self.started if n != last and p.poll() is None], timeout=15)
            family |= self._descendants()  # a pod started meanwhile
            _stop([p for n, p in self.started if n == last and p.poll() is None], timeout=20)
            for child in family:
                with contextlib.suppress(psutil.Error):
                    child.terminate()
            _, alive = psutil.wait_procs(list(family), timeout=3)
            for child in alive:
                with contextlib.suppress(psutil.Error):
                    child.kill()
            psutil.wait_procs(alive, timeout=3)
        finally:
            for sig, handler in ignored.items():
                signal.signal(sig, handler)


def _stop(procs: list[subprocess.Popen[str]], *, timeout: float) -> None:
    """SIGTERM to all at once, then SIGKILL to any still there after `timeout`."""
    for proc in procs:
        proc.terminate()
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _ignore_signals() -> dict[signal.Signals, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the demo as Ctrl-C does: through its cleanup."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)
