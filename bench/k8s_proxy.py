"""A counting TCP proxy in front of the simulated API server: every request the broker makes
is timestamped with its method and path (watches marked), the responses pass through untouched
(streamed, so watches work). What `bench/k8s.py` reads the broker's API use from."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Seen:
    at: float  # time.monotonic()
    method: str
    path: str  # with the query

    @property
    def watch(self) -> bool:
        return "watch=true" in self.path or "watch=1" in self.path


@dataclass
class CountingProxy:
    upstream: tuple[str, int]
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._lock = threading.Lock()
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._stop = True
        self._server.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._copy, args=(upstream, client), daemon=True).start()

    def _copy(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        """Client to server: forward each request whole, noting its request line."""
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = client.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                method, path, _ = lines[0].decode("latin-1").split(" ", 2)
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                while len(buf) < length:
                    data = client.recv(65536)
                    if not data:
                        return
                    buf += data
                body, buf = buf[:length], buf[length:]
                with self._lock:
                    self.seen.append(Seen(time.monotonic(), method, path))
                upstream.sendall(head + b"\r\n\r\n" + body)
        except OSError:
            return
        finally:
            with contextlib.suppress(OSError):
                upstream.shutdown(socket.SHUT_WR)

    def since(self, t: float) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.at >= t]
