"""FastAPI app over a running Daemon. TCP listeners require a bearer token (constant-time
comparison); the unix socket relies on its 0600 mode."""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import BaseModel, Field

from gpuherd.broker.daemon import Daemon
from gpuherd.broker.journal import TENANT_STATES, JobRow
from gpuherd.broker.metrics import BrokerCollector
from gpuherd.ids import JobName


class SubmitRequest(BaseModel):
    name: str = Field(min_length=1, description="A job declared in the broker's config.")


def _job(row: JobRow, waiting: dict[str, str]) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "state": row.state,
        "reason": waiting.get(row.id, row.reason),
        "submitted_at": row.submitted_at,
        "started_at": row.started_at,
        "ended_at": row.ended_at,
        "pid": row.pid,
        "exit_code": row.exit_code,
    }


def create_app(daemon: Daemon, *, token: str | None = None) -> FastAPI:
    app = FastAPI(title="gpuherd broker", version="1")
    registry = CollectorRegistry()
    registry.register(BrokerCollector(daemon))
    engine = daemon.engine

    if token is not None:

        @app.middleware("http")
        async def require_token(request: Request, call_next: Any) -> Any:
            given = request.headers.get("authorization", "").removeprefix("Bearer ")
            if not hmac.compare_digest(given.encode(), token.encode()):
                return JSONResponse({"detail": "missing or wrong bearer token"}, status_code=401)
            return await call_next(request)

    @app.post("/v1/jobs", status_code=201)
    def submit(body: SubmitRequest) -> dict[str, str]:
        if JobName(body.name) not in engine.config.jobs:
            raise HTTPException(
                404,
                detail=[
                    {
                        "loc": ["body", "name"],
                        "msg": f"no job named {body.name!r} in the config",
                        "type": "value_error",
                    }
                ],
            )
        return {"id": daemon.locked(lambda: engine.submit(body.name))}

    @app.get("/v1/jobs")
    def jobs(all: bool = False) -> list[dict[str, Any]]:
        return [_job(r, engine.waiting) for r in engine.journal.jobs(include_ended=all)]

    @app.get("/v1/jobs/{job_id}")
    def job(job_id: str) -> dict[str, Any]:
        row = engine.journal.job(job_id)
        if row is None:
            raise HTTPException(404, detail=f"no job {job_id}")
        data = _job(row, engine.waiting)
        data["releases"] = [
            {
                "tenant": r.tenant,
                "method": r.method,
                "state": r.state,
                "released_at": r.released_at,
                "restored_at": r.restored_at,
            }
            for r in engine.journal.releases(job_id=job_id)
        ]
        return data

    @app.post("/v1/jobs/{job_id}/cancel")
    def cancel(job_id: str) -> dict[str, str]:
        try:
            return {"state": daemon.locked(lambda: engine.cancel(job_id))}
        except KeyError:
            raise HTTPException(404, detail=f"no job {job_id}") from None

    @app.get("/v1/jobs/{job_id}/logs", response_class=PlainTextResponse)
    def logs(job_id: str, stream: str = "out") -> str:
        if engine.journal.job(job_id) is None:
            raise HTTPException(404, detail=f"no job {job_id}")
        if stream not in ("out", "err"):
            raise HTTPException(
                422,
                detail=[
                    {
                        "loc": ["query", "stream"],
                        "msg": "stream is out or err",
                        "type": "value_error",
                    }
                ],
            )
        path = engine.state_dir / "logs" / f"{job_id}.{stream}"
        return path.read_text(errors="replace") if path.exists() else ""

    @app.get("/v1/status")
    def status() -> dict[str, Any]:
        snap = daemon.last_snapshot
        open_releases = {
            r.tenant: TENANT_STATES[r.state] for r in engine.journal.releases(open_only=True)
        }
        return {
            "gpus": []
            if snap is None
            else [
                {
                    "index": d.index,
                    "name": d.name,
                    "memory": {
                        "total": d.memory_total,
                        "used": d.memory_used,
                        "free": d.memory_free,
                    },
                }
                for d in snap.devices
            ],
            "tenants": [
                {"name": t, "state": open_releases.get(t, "running")} for t in engine.config.tenants
            ],
            "jobs": [_job(r, engine.waiting) for r in engine.journal.jobs()],
        }

    @app.get("/v1/events")
    def events(since: float = 0.0) -> list[dict[str, Any]]:
        return [
            {"at": e.at, "kind": e.kind, "job": e.job_id, "tenant": e.tenant, "message": e.message}
            for e in engine.journal.events(since=since)
        ]

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> str:
        return generate_latest(registry).decode()

    return app
