"""FastAPI app over a running Daemon. TCP listeners require a bearer token (constant-time
comparison); the unix socket relies on its 0600 mode."""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gpuherd.broker.daemon import Daemon
from gpuherd.broker.engine import Engine
from gpuherd.broker.journal import TENANT_STATES, JobRow
from gpuherd.broker.metrics import BrokerCollector


class AdhocJob(BaseModel):
    """A job that is not in the config (only with `broker.allow_adhoc: true`). The fields and
    their units are a config job entry's."""

    model_config = ConfigDict(extra="forbid")
    gpu: str = Field(description="A GPU name from the config.")
    vram: str | int = Field(description='VRAM it needs: "6GiB", a fraction "0.5", or bytes.')
    command: list[str] = Field(min_length=1, description="argv; run without a shell.")
    priority: int = 0
    timeout: str | float = Field("1h", description='"30m", "2h" or seconds.')
    grace: str | float = Field("30s", description="From SIGTERM to SIGKILL on timeout/cancel.")
    workdir: str | None = None
    env: dict[str, str] = Field(default_factory=dict)


class SubmitRequest(BaseModel):
    name: str | None = Field(
        None,
        min_length=1,
        description="A job declared in the broker's config; for an ad hoc job, its label.",
    )
    adhoc: AdhocJob | None = Field(None, description="Run this instead of a config job.")
    not_before: float | None = Field(None, description="Unix time before which it must not start.")

    @model_validator(mode="after")
    def _named_or_adhoc(self) -> SubmitRequest:
        if self.name is None and self.adhoc is None:
            raise ValueError("give name (a job in the config) or adhoc (a command to run)")
        return self


def _field_error(status: int, loc: list[str | int], msg: str) -> HTTPException:
    return HTTPException(status, detail=[{"loc": loc, "msg": msg, "type": "value_error"}])


def _job(row: JobRow, engine: Engine) -> dict[str, Any]:
    act = engine.active.get(row.id)
    return {
        "id": row.id,
        "name": row.name,
        "state": row.state,
        "reason": engine.waiting.get(row.id, row.reason),
        "submitted_at": row.submitted_at,
        "started_at": row.started_at,
        "ended_at": row.ended_at,
        "pid": row.pid,
        "exit_code": row.exit_code,
        "vram_used": None if act is None else act.vram_now,
        "adhoc": "adhoc" in row.spec,
        "result": row.result,
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
        adhoc = None if body.adhoc is None else body.adhoc.model_dump(exclude_defaults=True)
        name = body.name or "adhoc"
        try:
            job_id = daemon.locked(
                lambda: engine.submit(name, adhoc=adhoc, not_before=body.not_before)
            )
            daemon.wake()
        except PermissionError as exc:
            raise _field_error(403, ["body", "adhoc"], str(exc)) from None
        except KeyError:
            raise _field_error(
                404, ["body", "name"], f"no job named {name!r} in the config"
            ) from None
        except ValidationError as exc:
            first = exc.errors()[0]
            raise _field_error(422, ["body", "adhoc", *first["loc"]], first["msg"]) from None
        except ValueError as exc:
            field, _, msg = str(exc).partition(": ")
            raise _field_error(422, ["body", "adhoc", field], msg) from None
        return {"id": job_id}

    @app.get("/v1/jobs")
    def jobs(all: bool = False) -> list[dict[str, Any]]:
        return [_job(r, engine) for r in engine.journal.jobs(include_ended=all)]

    @app.get("/v1/jobs/{job_id}")
    def job(job_id: str) -> dict[str, Any]:
        row = engine.journal.job(job_id)
        if row is None:
            raise HTTPException(404, detail=f"no job {job_id}")
        data = _job(row, engine)
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
            raise _field_error(422, ["query", "stream"], "stream is out or err")
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
            "jobs": [_job(r, engine) for r in engine.journal.jobs()],
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
