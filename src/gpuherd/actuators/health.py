"""A tenant's `health` check: the proof that a restore worked when memory alone cannot tell
(a model server can hold its VRAM and still answer 500s, or hold none that can be attributed)."""

from __future__ import annotations

import subprocess
import time

import httpx

from gpuherd.spec.model import CommandHealth, Health, UrlHealth


def probe(health: Health, timeout: float) -> str | None:
    """One probe: None when healthy, else why not."""
    match health:
        case UrlHealth(url=url):
            try:
                response = httpx.get(url, timeout=timeout)
            except httpx.HTTPError as exc:
                return f"GET {url} failed: {exc}"
            return None if response.is_success else f"GET {url} answered {response.status_code}"
        case CommandHealth(argv=argv):
            try:
                done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                return f"{argv[0]}: {exc}"
            return None if done.returncode == 0 else f"{argv[0]} exited {done.returncode}"


def wait_healthy(health: Health, timeout: float, poll: float = 0.5) -> str | None:
    """Probe until healthy or `timeout` passes; None when healthy, else the last reason."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        why = probe(health, timeout=max(min(left, 10.0), 0.5))
        if why is None or time.monotonic() + poll >= deadline:
            return why
        time.sleep(poll)
