"""`gpuherd ui`'s local port: a loopback HTTP listener that forwards to the broker's unix
socket, for brokers that serve the socket only. Anything but the page and its assets needs the
listener's own random bearer token, so other local users cannot ride on this user's socket
access; the broker sees this process's uid, so ownership and cancel rights stay this user's."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

import httpx

from gpuherd.api.dashboard import is_public

# Not copied: per-hop headers, our token (the socket needs none) and encodings httpx undid.
_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host", "authorization"}
_HOP |= {"content-encoding", "content-length"}


def forward_app(socket: Path, token: str) -> Any:
    """A bare ASGI app (no framework: it only copies requests through)."""
    client = httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(uds=str(socket)), base_url="http://gpuherd", timeout=90
    )

    async def reply(send: Any, status: int, body: bytes, kind: bytes = b"text/plain") -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", kind)]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await client.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        header = headers.get("authorization", "")
        given = header.removeprefix("Bearer ") if header.startswith("Bearer ") else ""
        if not is_public(scope["path"]) and not hmac.compare_digest(given, token):
            await reply(
                send, 401, b'{"detail":"missing or wrong bearer token"}', b"application/json"
            )
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            answer = await client.request(
                scope["method"],
                scope["path"],
                params=scope["query_string"].decode(),
                content=body,
                headers={k: v for k, v in headers.items() if k not in _HOP},
            )
        except httpx.TransportError:
            await reply(send, 502, f"no broker answers at {socket}".encode())
            return
        out = [(k.encode(), v.encode()) for k, v in answer.headers.items() if k.lower() not in _HOP]
        out.append((b"content-length", str(len(answer.content)).encode()))
        await send({"type": "http.response.start", "status": answer.status_code, "headers": out})
        await send({"type": "http.response.body", "body": answer.content})

    return app
