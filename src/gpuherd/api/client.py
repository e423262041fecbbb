"""The one client of the broker's HTTP API, over its unix socket or TCP with a token. The CLI,
the benchmarks and the tests use it; errors come back as two exception types."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

import httpx


class BrokerUnreachable(Exception):
    """Nothing answers where the broker should be."""

    def __init__(self, where: str) -> None:
        super().__init__(f"no broker answers at {where}")
        self.where = where


class BrokerRefused(Exception):
    """The broker answered with an error; `message` names the field when there is one."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _message(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        return response.text or f"HTTP {response.status_code}"
    if isinstance(detail, list) and detail:
        field = ".".join(str(x) for x in detail[0].get("loc", [])[1:])
        return f"{field}: {detail[0]['msg']}" if field else str(detail[0]["msg"])
    return str(detail)


class Client:
    def __init__(
        self,
        *,
        socket: Path | None = None,
        url: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        if url:
            headers = {"Authorization": f"Bearer {token or ''}"}
            self._http = httpx.Client(base_url=url, headers=headers, timeout=timeout)
            self.where = url
        else:
            if socket is None:
                raise ValueError("give the broker's socket or url")
            transport = httpx.HTTPTransport(uds=str(socket))
            self._http = httpx.Client(
                transport=transport, base_url="http://gpuherd", timeout=timeout
            )
            self.where = str(socket)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kw)
        except (httpx.ConnectError, FileNotFoundError):
            raise BrokerUnreachable(self.where) from None
        if response.status_code == 401:
            raise BrokerRefused(401, "the broker refused the token (--token-file)")
        if response.status_code >= 400:
            raise BrokerRefused(response.status_code, _message(response))
        return response

    def submit(self, body: dict[str, Any], *, key: str | None = None) -> str:
        headers = {} if key is None else {"Idempotency-Key": key}
        return str(self._call("POST", "/v1/jobs", json=body, headers=headers).json()["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self._call("GET", f"/v1/jobs/{job_id}").json()
        return data

    def jobs(self, *, include_ended: bool = False) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self._call(
            "GET", "/v1/jobs", params={"all": include_ended}
        ).json()
        return data

    def status(self) -> dict[str, Any]:
        data: dict[str, Any] = self._call("GET", "/v1/status").json()
        return data

    def events(self, *, since: float = 0.0) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self._call("GET", "/v1/events", params={"since": since}).json()
        return data

    def cancel(self, job_id: str) -> str:
        return str(self._call("POST", f"/v1/jobs/{job_id}/cancel").json()["state"])

    def logs(self, job_id: str, stream: str = "out") -> str:
        return self._call("GET", f"/v1/jobs/{job_id}/logs", params={"stream": stream}).text

    def metrics(self) -> str:
        return self._call("GET", "/metrics").text
