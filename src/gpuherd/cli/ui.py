"""`gpuherd ui`: the web dashboard of a broker that serves its unix socket only, on a local
port with a fresh token, opened in the browser."""

from __future__ import annotations

import json
import secrets
import signal
import socket as socket_mod
import threading
from typing import Annotated

import typer

from gpuherd.cli.broker import SocketOpt, default_socket
from gpuherd.cli.common import Exit, fail


def ui(
    socket: SocketOpt = None,
    port: Annotated[
        int, typer.Option("--port", help="Local port to listen on (0: any free one).")
    ] = 0,
    browser: Annotated[
        bool, typer.Option("--browser/--no-browser", help="Open the page in a browser.")
    ] = True,
) -> None:
    """Open the broker's web dashboard through its unix socket.

    Listens on 127.0.0.1 only, with a random token that is in the printed URL (after #, so it
    never reaches a server log); requests go to the socket as you, so you see and may cancel
    what you could with `gpuherd cancel`. Stops on Ctrl-C.
    """
    import uvicorn

    from gpuherd.api.client import BrokerUnreachable, Client
    from gpuherd.api.forward import forward_app
    from gpuherd.api.server import _server_class

    sock = socket or default_socket()
    try:
        with Client(socket=sock, timeout=5) as client:
            client.status()
    except BrokerUnreachable as exc:
        fail(str(exc), hint="start one with: gpuherd serve -c gpuherd.yaml", code=Exit.NO_BROKER)
    listener = socket_mod.socket(socket_mod.AF_INET, socket_mod.SOCK_STREAM)
    listener.setsockopt(socket_mod.SOL_SOCKET, socket_mod.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", port))
    except OSError as exc:
        fail(f"--port {port}: {exc.strerror or exc}")
    token = secrets.token_urlsafe(24)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/#token={token}"
    config = uvicorn.Config(forward_app(sock, token), fd=listener.fileno(), log_level="warning")
    server = _server_class()(config)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: setattr(server, "should_exit", True))

    def announce() -> None:
        while not server.started and not server.should_exit:
            threading.Event().wait(0.02)
        print(json.dumps({"event": "listening", "url": url}), flush=True)
        if browser:
            import webbrowser

            webbrowser.open(url)

    threading.Thread(target=announce, daemon=True).start()
    try:
        server.run()
    finally:
        listener.close()
