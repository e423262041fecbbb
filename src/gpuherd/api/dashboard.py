"""The web dashboard's server side: the static page (shipped in the package, no build step, no
CDN) and `/v1/history`, an hour of GPU memory by tenant sampled in the server so a page opened
now still draws the last hour.

The page and its assets are public (they hold no data); every data call it makes goes through
the same API and the same bearer token as any client. The page takes the token from the URL's
fragment (`/#token=...`), which browsers never send to the server or write to its logs."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from gpuherd.broker.service import Broker
from gpuherd.ids import JobName, TenantName

STATIC = Path(__file__).resolve().parent / "static"
HOUR = 3600.0


def is_public(path: str) -> bool:
    """The page and its assets: served without the token."""
    return path == "/" or path.startswith("/dashboard/")


class History:
    """Samples of memory per GPU: total, used, and the bytes each tenant and running job holds
    there. `sample()` appends one; the ring keeps the last hour."""

    def __init__(self, broker: Broker, *, every: float = 2.0) -> None:
        self.broker = broker
        self.every = every
        self._samples: deque[dict[str, Any]] = deque(maxlen=int(HOUR / every) + 1)

    def _gpu_index(self, name: str | None) -> int | None:
        spec = None if name is None else self.broker.config.gpu(name)
        return None if spec is None else spec.index

    def sample(self, now: float | None = None) -> dict[str, Any]:
        views = self.broker.views
        gpus: dict[int, dict[str, Any]] = {
            g.index: {"index": g.index, "name": g.name, "total": g.total, "used": g.used, "by": {}}
            for g in views.gpus()
        }
        for t in views.tenants():
            index = self._gpu_index(t.gpu)
            if index in gpus and t.held:
                gpus[index]["by"][f"tenant:{t.name}"] = t.held
        for j in views.jobs():
            spec = self.broker.config.jobs.get(JobName(j.name))
            index = self._gpu_index(spec.gpu if spec is not None else None)
            if index in gpus and j.vram_used:
                gpus[index]["by"][f"job:{j.name}"] = j.vram_used
        point = {"at": time.time() if now is None else now, "gpus": list(gpus.values())}
        self._samples.append(point)
        return point

    def since(self, at: float) -> list[dict[str, Any]]:
        return [s for s in self._samples if s["at"] > at]

    async def run(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # a failed read is a gap in the chart, no more
                await asyncio.to_thread(self.sample)
            await asyncio.sleep(self.every)


def tenant_downtimes(broker: Broker) -> list[dict[str, Any]]:
    """Each tenant's state and GPU, with `down_since` (released and not back yet), the last
    completed release's `last_down_s`, its `max_downtime_s` and how many releases so far."""
    releases = broker.views.releases()
    out = []
    for t in broker.views.tenants():
        mine = [r for r in releases if r.tenant == t.name]
        spec = broker.config.tenants.get(TenantName(t.name))
        open_ = [r for r in mine if r.restored_at is None and r.released_at is not None]
        done = [r for r in mine if r.down_s is not None]
        out.append(
            {
                "name": t.name,
                "state": str(t.state),
                "gpu": t.gpu,
                "held": t.held,
                "down_since": open_[-1].released_at if open_ else None,
                "last_down_s": done[-1].down_s if done else None,
                "max_downtime_s": None if spec is None else spec.max_downtime,
                "releases": len(mine),
            }
        )
    return out


def mount_dashboard(app: FastAPI, broker: Broker, *, every: float = 2.0) -> History:
    history = History(broker, every=every)

    @contextlib.asynccontextmanager
    async def sampling(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(history.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.router.lifespan_context = sampling

    @app.get("/v1/history", tags=["dashboard"])
    def history_since(since: float = 0.0) -> list[dict[str, Any]]:
        """Memory per GPU by tenant and job, one sample every few seconds, the last hour."""
        return history.since(max(since, time.time() - HOUR))

    @app.get("/v1/tenants", tags=["dashboard"])
    def tenants() -> list[dict[str, Any]]:
        """Tenants with their state, and how long they are or were last down."""
        return tenant_downtimes(broker)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/dashboard", StaticFiles(directory=STATIC), name="dashboard")
    return history
