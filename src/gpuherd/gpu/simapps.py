"""Simulated Ollama / vLLM / ComfyUI / A1111 servers that hold sim VRAM like the real ones.

They speak the endpoints and payload shapes the actuators use (Ollama /api/ps and /api/generate
with keep_alive, vLLM /sleep, /is_sleeping, /wake_up, ComfyUI /free, A1111 unload/reload), and
allocate or free their models' memory on the sim GPU, so a test sees on the backend whether a
release really freed memory; the demo and the tests use them. Run through
`gpuherd sim app KIND MODEL=SIZE[,MODEL=SIZE]`; it prints `listening PORT` when ready and exits
cleanly on SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from gpuherd.gpu.sim import SimError, SimHost
from gpuherd.units import parse_bytes


class App:
    def __init__(self, kind: str, sim_dir: Path, models: dict[str, int]) -> None:
        self.kind = kind
        self.host = SimHost(sim_dir)
        self.models = models
        self.loaded: set[str] = set()
        self.sleeping = False
        self.lock = threading.Lock()
        for name in models:
            self.load(name)

    def load(self, name: str) -> None:
        if name not in self.loaded:
            self.host.allocate(pid=os.getpid(), gpu=0, nbytes=self.models[name], name=self.kind)
            self.loaded.add(name)

    def unload(self, name: str) -> None:
        if name in self.loaded:
            self.host.free(pid=os.getpid(), gpu=0, nbytes=self.models[name])
            self.loaded.discard(name)


def handler(app: App) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def reply(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"null")

        def do_GET(self) -> None:
            def _status(model: str) -> str:
                return "loaded" if model in app.loaded else "unloaded"

            path = urlparse(self.path).path
            if app.kind == "ollama" and path == "/api/ps":
                expires = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
                self.reply(
                    200,
                    {
                        "models": [
                            {
                                "name": m,
                                "model": m,
                                "size": app.models[m],
                                "size_vram": app.models[m],
                                "expires_at": expires,
                            }
                            for m in sorted(app.loaded)
                        ]
                    },
                )
            elif app.kind == "llamacpp" and path == "/models":  # llama-server router mode
                self.reply(
                    200,
                    {
                        "data": [
                            {"id": m, "status": {"value": _status(m)}} for m in sorted(app.models)
                        ]
                    },
                )
            elif app.kind == "vllm" and path == "/is_sleeping":
                self.reply(200, {"is_sleeping": app.sleeping})
            else:
                self.reply(404, {"error": "not found"})

        def do_POST(self) -> None:
            url = urlparse(self.path)
            with app.lock:
                if app.kind == "ollama" and url.path == "/api/generate":
                    self._ollama_generate(self.body())
                elif app.kind == "vllm" and url.path in ("/sleep", "/wake_up"):
                    level = parse_qs(url.query).get("level", ["1"])[0]
                    threading.Thread(target=self._vllm, args=(url.path == "/sleep",)).start()
                    self.reply(200, {"level": level} if url.path == "/sleep" else {})
                elif (app.kind == "comfyui" and url.path == "/free") or (
                    app.kind == "a1111" and url.path == "/sdapi/v1/unload-checkpoint"
                ):
                    for name in list(app.loaded):
                        app.unload(name)
                    self.reply(200, {})
                elif app.kind == "a1111" and url.path == "/sdapi/v1/reload-checkpoint":
                    for name in app.models:
                        app.load(name)
                    self.reply(200, {})
                elif app.kind == "llamacpp" and url.path in ("/models/load", "/models/unload"):
                    self._llamacpp((self.body() or {}).get("model"), url.path.endswith("/load"))
                else:
                    self.reply(404, {"error": "not found"})

        def _ollama_generate(self, request: dict[str, Any]) -> None:
            model = request.get("model")
            if model not in app.models:
                self.reply(404, {"error": f"model '{model}' not found"})
            elif request.get("keep_alive") == 0:
                app.unload(model)
                self.reply(200, {"model": model, "done": True, "done_reason": "unload"})
            else:
                try:
                    app.load(model)
                except SimError as exc:
                    self.reply(500, {"error": str(exc)})
                    return
                self.reply(200, {"model": model, "done": True, "done_reason": "load"})

        def _llamacpp(self, model: str | None, load: bool) -> None:
            """llama-server router mode: POST /models/load and /models/unload {"model": M}."""
            if model not in app.models:
                self.reply(404, {"error": {"message": f"model {model!r} not found"}})
                return
            try:
                app.load(model) if load else app.unload(model)
            except SimError as exc:
                self.reply(500, {"error": {"message": str(exc)}})
                return
            self.reply(200, {"success": True})

        def _vllm(self, sleep: bool) -> None:
            time.sleep(0.3)  # vLLM answers /sleep before the weights are off the GPU
            with app.lock:
                for name in app.models:
                    app.unload(name) if sleep else app.load(name)
                app.sleeping = sleep

    return Handler


def serve_app(
    kind: str, sim_dir: Path, models: dict[str, int], port: int = 0, *, host: str = "127.0.0.1"
) -> None:
    """Run until SIGTERM/SIGINT; prints `listening PORT` once it accepts connections."""
    app = App(kind, sim_dir, models)
    server = ThreadingHTTPServer((host, port), handler(app))

    def stop(*_: object) -> None:
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"listening {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    finally:
        app.host.forget(pid=os.getpid())


def parse_models(spec: str) -> dict[str, int]:
    return {k: parse_bytes(v) for k, v in (item.split("=", 1) for item in spec.split(","))}
