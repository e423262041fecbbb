"""Serving the broker: the unix socket born 0600 (or 0660 with --socket-group), TCP only with a
token, uvicorn without its own signal handling (it re-raises SIGTERM after shutdown, which would
skip our cleanup), and a start/stop a test can drive in-process. On the unix socket every request
carries the peer's uid (SO_PEERCRED) in its ASGI scope, under PEER_UID."""

from __future__ import annotations

import contextlib
import os
import socket as socket_mod
import stat
import struct
import tempfile
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


PEER_UID = "gpuherd.peer_uid"  # ASGI scope key: the connecting process's uid (unix socket only)


def claim_socket(path: Path) -> None:
    """Make room for our socket at `path`: a stale socket is removed; a live broker's socket,
    or anything that is not a socket, is refused (never delete what we did not create)."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ListenError(f"--socket {path} exists and is not a socket; not replacing it")
    probe = socket_mod.socket(socket_mod.AF_UNIX, socket_mod.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)  # nobody answers: left by a broker that died
        return
    finally:
        probe.close()
    raise ListenError(f"--socket {path}: another broker is serving there")


def bind_unix(path: Path, *, group: int | None = None) -> socket_mod.socket:
    """Bind the socket so that it is 0600 from birth (0660 and owned by `group` with one),
    and put the umask back at once: jobs and restored tenants started later must get the
    normal umask, not this one.

    With a group the socket is bound in a private 0700 directory next to `path`, given its
    group and mode there, and renamed into place: nobody can reach it before it has its final
    owner and mode, and no one outside the group ever can."""
    if len(os.fsencode(path)) >= 108:
        raise ListenError(f"--socket {path}: a unix socket path must be under 108 bytes")
    listener = socket_mod.socket(socket_mod.AF_UNIX, socket_mod.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        if group is None:
            listener.bind(str(path))
            return listener
        private = Path(tempfile.mkdtemp(prefix=".gpuherd-bind-", dir=path.parent))  # 0700
        staged = private / "s"  # short: the private dir's name must fit the 108 bytes too
        try:
            if len(os.fsencode(staged)) >= 108:
                raise ListenError(f"--socket {path}: its directory's path is too long to bind in")
            listener.bind(str(staged))
            os.chown(staged, -1, group)
            os.chmod(staged, 0o660)
            os.rename(staged, path)
        finally:
            staged.unlink(missing_ok=True)
            private.rmdir()
    except BaseException:
        listener.close()
        raise
    finally:
        os.umask(old)
    return listener


def peer_uid(sock: Any) -> int | None:
    """The uid of the process at the other end of a unix socket (Linux SO_PEERCRED)."""
    if sock is None or getattr(sock, "family", None) != socket_mod.AF_UNIX:
        return None
    try:
        creds = sock.getsockopt(socket_mod.SOL_SOCKET, socket_mod.SO_PEERCRED, 12)
    except OSError:
        return None
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class BrokerServer:
    def __init__(
        self,
        broker: Broker,
        *,
        socket_path: Path | None = None,
        listen: str | None = None,
        token: str | None = None,
        socket_group: int | None = None,
        static: bool = False,
    ) -> None:
        import uvicorn

        from gpuherd.api.app import create_app

        if listen is not None:
            host, port = parse_listen(listen)
            config = uvicorn.Config(
                create_app(broker, token=token, static=static),
                host=host,
                port=port,
                log_level="warning",
            )
            self._listener: socket_mod.socket | None = None
        else:
            assert socket_path is not None
            self._listener = bind_unix(socket_path, group=socket_group)
            config = uvicorn.Config(
                create_app(broker, static=static),
                fd=self._listener.fileno(),
                log_level="warning",
                http=_peer_protocol(),
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


def _peer_protocol() -> Any:
    """uvicorn's HTTP protocol, with each connection's app seeing the peer's uid in its scope
    (uvicorn reports no client address for a unix socket, so nothing else carries it)."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    class PeerProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            uid = peer_uid(transport.get_extra_info("socket"))
            app: Any = getattr(self, "app")  # noqa: B009  (set by uvicorn; untyped here)

            async def with_peer(scope: Any, receive: Any, send: Any) -> None:
                await app({**scope, PEER_UID: uid}, receive, send)

            setattr(self, "app", with_peer)  # noqa: B010

    return PeerProtocol


def _server_class() -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server
