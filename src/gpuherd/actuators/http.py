"""Application-native release over HTTP: Ollama unload, vLLM sleep, ComfyUI/A1111/llama.cpp.

These free VRAM while keeping the server up, so a restore is a reload, not a cold start. A 200
proves nothing: the engine confirms on the GPU backend that the memory is really gone.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import httpx

from gpuherd.actuators.base import ActContext, ActuatorError

POD_IP = "{pod_ip}"


def _at_pod(url: str, ctx: ActContext) -> str:
    """`{pod_ip}` in a URL: the address of the tenant's pod on this node (Kubernetes mode)."""
    if POD_IP not in url:
        return url
    if not ctx.pod_ips:
        raise ActuatorError(
            f"{ctx.tenant}: {url} names {POD_IP}, but no pod of the tenant runs on this node "
            "(or the broker is not in Kubernetes mode)"
        )
    return url.replace(POD_IP, ctx.pod_ips[0])


def _call(method: str, url: str, ctx: ActContext, body: Any = None) -> httpx.Response:
    url = _at_pod(url, ctx)
    try:
        response = httpx.request(method, url, json=body, timeout=ctx.timeout)
    except httpx.HTTPError as exc:
        raise ActuatorError(f"{ctx.tenant}: {method} {url} failed: {exc}") from None
    if response.status_code >= 400:
        raise ActuatorError(
            f"{ctx.tenant}: {method} {url} answered {response.status_code}: {response.text[:200]}"
        )
    return response


class OllamaActuator:
    """Unload every loaded model (`keep_alive: 0`), reload the same models on restore."""

    kind = "ollama"

    def __init__(self, url: str, reload: bool = True) -> None:
        self._url = url.rstrip("/")
        self._reload = reload

    def release(self, ctx: ActContext) -> dict[str, Any]:
        models = _call("GET", f"{self._url}/api/ps", ctx).json().get("models") or []
        unloaded = []
        now = datetime.now(UTC)
        for model in models:
            name = model.get("model") or model.get("name")
            keep = None
            expires = model.get("expires_at")
            if isinstance(expires, str):
                try:  # what was left of its keep_alive, to give it back on reload
                    left = datetime.fromisoformat(expires.replace("Z", "+00:00")) - now
                    keep = f"{max(int(left.total_seconds()), 60)}s"
                except ValueError:
                    keep = None
            _call("POST", f"{self._url}/api/generate", ctx, {"model": name, "keep_alive": 0})
            unloaded.append(
                {"model": name, "keep_alive": keep, "size_vram": model.get("size_vram")}
            )
        return {"models": unloaded}

    def restore(self, ctx: ActContext, detail: dict[str, Any]) -> dict[str, Any]:
        if not self._reload:
            return {"reloaded": []}
        reloaded = []
        for model in detail.get("models") or []:
            body: dict[str, Any] = {"model": model["model"]}
            if model.get("keep_alive"):
                body["keep_alive"] = model["keep_alive"]
            _call("POST", f"{self._url}/api/generate", ctx, body)
            reloaded.append(model["model"])
        return {"reloaded": reloaded}


class VllmSleepActuator:
    """vLLM sleep mode (--enable-sleep-mode): weights to CPU (level 1) or dropped (level 2)."""

    kind = "vllm-sleep"

    def __init__(self, url: str, level: int = 1, poll: float = 0.2) -> None:
        self._url = url.rstrip("/")
        self._level = level
        self._poll = poll

    def _wait_sleeping(self, ctx: ActContext, want: bool) -> None:
        deadline = time.monotonic() + ctx.timeout
        while time.monotonic() < deadline:
            if _call("GET", f"{self._url}/is_sleeping", ctx).json().get("is_sleeping") is want:
                return
            time.sleep(self._poll)
        raise ActuatorError(
            f"{ctx.tenant}: vLLM did not report is_sleeping={want} within {ctx.timeout:g}s"
        )

    def release(self, ctx: ActContext) -> dict[str, Any]:
        # /sleep returns before the weights are off the GPU: poll until vLLM says it sleeps.
        _call("POST", f"{self._url}/sleep?level={self._level}", ctx)
        self._wait_sleeping(ctx, True)
        return {"level": self._level}

    def restore(self, ctx: ActContext, detail: dict[str, Any]) -> dict[str, Any]:
        _call("POST", f"{self._url}/wake_up", ctx)
        self._wait_sleeping(ctx, False)
        return {"awake": True}


PRESETS: dict[str, tuple[tuple[str, str, Any] | None, tuple[str, str, Any] | None]] = {
    # preset: ((method, path, body) to release, (method, path, body) to restore or None)
    "comfyui": (("POST", "/free", {"unload_models": True, "free_memory": True}), None),
    "a1111": (
        ("POST", "/sdapi/v1/unload-checkpoint", None),
        ("POST", "/sdapi/v1/reload-checkpoint", None),
    ),
    "llamacpp": (
        ("POST", "/models/unload", {"model": "{model}"}),
        ("POST", "/models/load", {"model": "{model}"}),
    ),
}


class HttpActuator:
    """A preset (comfyui, a1111, llamacpp) or explicit release/restore calls."""

    kind = "http"

    def __init__(
        self,
        *,
        preset: str | None = None,
        url: str | None = None,
        model: str | None = None,
        release: tuple[str, str, Any] | None = None,
        restore: tuple[str, str, Any] | None = None,
    ) -> None:
        base = (url or "").rstrip("/")
        if preset is not None:
            rel, res = PRESETS[preset]
            release = (rel[0], base + rel[1], self._fill(rel[2], model)) if rel else None
            restore = (res[0], base + res[1], self._fill(res[2], model)) if res else None
        self._release_call = release
        self._restore_call = restore

    @staticmethod
    def _fill(body: Any, model: str | None) -> Any:
        if isinstance(body, dict):
            return {k: (model if v == "{model}" else v) for k, v in body.items()}
        return body

    def release(self, ctx: ActContext) -> dict[str, Any]:
        if self._release_call is None:
            raise ActuatorError(f"{ctx.tenant}: no release call")
        method, url, body = self._release_call
        return {"status": _call(method, url, ctx, body).status_code}

    def restore(self, ctx: ActContext, detail: dict[str, Any]) -> dict[str, Any]:
        if self._restore_call is None:
            return {"status": None}  # the application reloads on its next request
        method, url, body = self._restore_call
        return {"status": _call(method, url, ctx, body).status_code}
