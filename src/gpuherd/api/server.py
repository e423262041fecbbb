"""Serving the broker: the unix socket born 0600, TCP only with a token, uvicorn without its
own signal handling (it re-raises SIGTERM after shutdown, which would skip our cleanup), and a
start/stop a test can drive in-process."""

from __future__ import annotations

import contextlib
import os
import socket as socket_mod
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gpuherd.broker.service import Broker


class ListenError(ValueError):
    pass


def parse_listen(listen: str) -> tuple[str, int]:
    """HOST:PORT, [IPv6]:PORT or :PORT (loopback)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ListenError(f"--listen {listen!r}: expected HOST:PORT with a port from 1 to 65535")
    return host.removeprefix("[").removesuffix("]") or "127.0.0.1", int(port)


def bind_unix(path: Path) -> socket_mod.socket:
    """Bind the socket so that it is 0600 from birth, and put the umask back at once: jobs
    and restored tenants started later must get the normal umask, not this one."""
    if len(os.fsencode(path)) >= 108:
        raise ListenError(f"--socket {path}: a unix socket path must be under 108 bytes")
    listener = socket_mod.socket(socket_mod.AF_UNIX, socket_mod.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        listener.bind(str(path))
    finally:
        os.umask(old)
    return listener


class BrokerServer:
    def __init__(
        self,
        broker: Broker,
        *,
        socket_path: Path | None = None,
        listen: str | None = None,
        token: str | None = None,
    ) -> None:
        import uvicorn

        from gpuherd.api.app import create_app

        if listen is not None:
            host, port = parse_listen(listen)
            config = uvicorn.Config(
                create_app(broker, token=token), host=host, port=port, log_level="warning"
            )
            self._listener: socket_mod.socket | None = None
        else:
            assert socket_path is not None
            self._listener = bind_unix(socket_path)
            config = uvicorn.Config(
                create_app(broker), fd=self._listener.fileno(), log_level="warning"
            )
        self.socket_path = socket_path if listen is None else None
        self._server = _server_class()(config)
        self._thread: threading.Thread | None = None

    @property
    def started(self) -> bool:
        return bool(self._server.started)

    def request_stop(self) -> None:
        self._server.should_exit = True

    def wait_started(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while not self._server.started and not self._server.should_exit:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return bool(self._server.started)

    def run(self) -> None:
        """Serve until `request_stop()` (the CLI calls it from its signal handlers)."""
        try:
            self._server.run()
        finally:
            if self._listener is not None:
                self._listener.close()
            if self.socket_path is not None:
                self.socket_path.unlink(missing_ok=True)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="gpuherd-api", daemon=True)
        self._thread.start()
        self.wait_started()

    def stop(self) -> None:
        self.request_stop()
        if self._thread is not None:
            self._thread.join(30)


def _server_class() -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server
