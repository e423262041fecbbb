"""FastAPI app over a running broker. TCP listeners require a bearer token (constant-time
comparison); the unix socket relies on its mode (0600, or 0660 for --socket-group). Reads go to
the broker's views, writes to its submit and cancel: the app never touches the engine or the
journal. On the unix socket a submission records the peer's uid as its owner, and a job may be
cancelled by its owner, root or the broker's own user only."""

from __future__ import annotations

import dataclasses
import hmac
import os
from typing import Any

from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import ValidationError

from gpuherd.api.dashboard import is_public
from gpuherd.api.models import Created, SubmitRequest
from gpuherd.api.opsmetrics import OpsCollector
from gpuherd.api.owners import may_cancel
from gpuherd.broker.errors import AdhocDisabled, SubmissionError, UnknownJob
from gpuherd.broker.metrics import BrokerCollector
from gpuherd.broker.service import Broker


def _field_error(status: int, loc: list[str | int], msg: str) -> HTTPException:
    return HTTPException(status, detail=[{"loc": loc, "msg": msg, "type": "value_error"}])


def _peer(request: Request) -> int | None:
    uid = request.scope.get("gpuherd.peer_uid")  # set by api.server on the unix socket
    return uid if isinstance(uid, int) else None


def _check_cancel(broker: Broker, job_id: str, peer: int | None) -> None:
    found = broker.views.job(job_id)
    if found is None:
        raise UnknownJob(f"no job {job_id}")
    if not may_cancel(peer=peer, owner=found.owner_uid, broker=os.geteuid()):
        owner = "no one (a scheduled or TCP job)" if found.owner_uid is None else found.owner_uid
        raise HTTPException(
            403,
            detail=f"job {job_id} belongs to uid {owner}: only its owner, root or the "
            "broker's own user may cancel it",
        )


MAX_BODY = 1 << 20  # bytes


class _BodyLimit:
    """A submission is a few hundred bytes; a 200 MiB body must not grow the broker for good.
    Plain ASGI, not an HTTP middleware: it sits in front of every request, hot path included."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            length = headers.get(b"content-length")
            refusal = None
            if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
                refusal = (413, f"request body over {MAX_BODY} bytes")
            elif length is None and b"transfer-encoding" in headers:
                refusal = (411, "a request body needs a Content-Length")
            if refusal is not None:
                response = JSONResponse({"detail": refusal[1]}, status_code=refusal[0])
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(broker: Broker, *, token: str | None = None, static: bool = False) -> FastAPI:
    app = FastAPI(title="gpuherd broker", version="1")
    registry = CollectorRegistry()
    registry.register(BrokerCollector(broker.views))
    registry.register(OpsCollector(broker))
    views = broker.views

    app.add_middleware(_BodyLimit)

    if token is not None:

        @app.middleware("http")
        async def require_token(request: Request, call_next: Any) -> Any:
            if static and is_public(request.url.path):
                return await call_next(request)  # the page holds no data; its calls send the token
            header = request.headers.get("authorization", "")
            given = header.removeprefix("Bearer ") if header.startswith("Bearer ") else ""
            if not given or not hmac.compare_digest(given.encode(), token.encode()):
                return JSONResponse({"detail": "missing or wrong bearer token"}, status_code=401)
            return await call_next(request)

    @app.exception_handler(UnknownJob)
    async def unknown(request: Request, exc: UnknownJob) -> JSONResponse:
        return JSONResponse({"detail": str(exc.args[0])}, status_code=404)

    # Async, with a plain JSONResponse: the hottest call under load, it costs the event loop a
    # parse and an append (the intake's thread writes batches), and no response-model pass.
    @app.post("/v1/jobs", status_code=201, response_model=None, responses={201: {"model": Created}})
    async def submit(
        body: SubmitRequest,
        request: Request,
        idempotency_key: str | None = Header(None, description="Same key, same job: retry-safe."),
    ) -> JSONResponse:
        try:
            submission = body.submission(key=idempotency_key)
            submission = dataclasses.replace(submission, owner_uid=_peer(request))
            return JSONResponse({"id": await broker.submit_async(submission)}, status_code=201)
        except AdhocDisabled as exc:
            raise _field_error(403, ["body", "adhoc"], str(exc)) from None
        except UnknownJob as exc:
            raise _field_error(404, ["body", "name"], str(exc.args[0])) from None
        except ValidationError as exc:
            first = exc.errors()[0]
            raise _field_error(422, ["body", "adhoc", *first["loc"]], first["msg"]) from None
        except SubmissionError as exc:
            where: list[str | int] = ["body", exc.field]
            if exc.field == "key":
                where = ["header", "Idempotency-Key"]
            if exc.field == "gpu":
                where = ["body", "adhoc", "gpu"]
            raise _field_error(422, where, exc.message) from None

    @app.get("/v1/jobs")
    def jobs(all: bool = False) -> list[dict[str, Any]]:
        return [j.to_dict() for j in views.jobs(include_ended=all)]

    @app.get("/v1/jobs/{job_id}")
    def job(job_id: str) -> dict[str, Any]:
        found = views.job(job_id)
        if found is None:
            raise UnknownJob(f"no job {job_id}")
        return found.to_dict()

    @app.post("/v1/jobs/{job_id}/cancel")
    def cancel(job_id: str, request: Request) -> dict[str, str]:
        _check_cancel(broker, job_id, _peer(request))
        return {"state": str(broker.cancel(job_id))}

    @app.get("/v1/jobs/{job_id}/logs", response_class=PlainTextResponse)
    def logs(job_id: str, stream: str = "out") -> str:
        if stream not in ("out", "err"):
            raise _field_error(422, ["query", "stream"], "stream is out or err")
        path = broker.log_path(job_id, stream)
        return path.read_text(errors="replace") if path.exists() else ""

    @app.get("/v1/status")
    def status() -> dict[str, Any]:
        return views.status().to_dict()

    @app.get("/v1/events")
    def events(since: float = 0.0) -> list[dict[str, Any]]:
        return [
            {"at": e.at, "kind": e.kind, "job": e.job, "tenant": e.tenant, "message": e.message}
            for e in views.events(since=since)
        ]

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> str:
        return generate_latest(registry).decode()

    if static:
        from gpuherd.api.dashboard import mount_dashboard

        mount_dashboard(app, broker)
    return app
