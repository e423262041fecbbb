"""Pod logs as the API serves them: the whole log, its last lines, or followed as it grows
until the container stops."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from gpuherd.simcluster import errors


class LogSource(Protocol):
    """One container's log file and whether it may still grow (a kubelet's Container)."""

    log_path: Path

    @property
    def running(self) -> bool: ...


Finder = Callable[[str, str, str | None], LogSource | None]


def _read(path: Path, offset: int = 0) -> bytes:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read()
    except OSError:
        return b""


def whole(source: LogSource | None, pod: str, container: str, tail: int | None) -> str:
    if source is None:
        raise errors.bad_request(
            f'container "{container}" in pod "{pod}" is waiting to start: ContainerCreating'
        )
    text = _read(source.log_path).decode(errors="replace")
    if tail is not None:
        lines = text.splitlines(keepends=True)
        text = "".join(lines[-tail:]) if tail > 0 else ""
    return text


def follow(source: LogSource, stopping: Callable[[], bool], poll: float = 0.1) -> Iterator[bytes]:
    """Chunks of the log as they are written, ending once the container has stopped."""
    offset = 0
    while True:
        running = source.running
        chunk = _read(source.log_path, offset)
        if chunk:
            offset += len(chunk)
            yield chunk
        if not running or stopping():
            return
        time.sleep(poll)
