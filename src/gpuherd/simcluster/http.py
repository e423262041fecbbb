"""HTTP routes of the simulated API server: the real paths, JSON bodies and Status errors, one
thread per connection so long-lived watch streams run side by side."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from gpuherd.simcluster import discovery, errors, logs
from gpuherd.simcluster.api import Api, ListQuery
from gpuherd.simcluster.resources import BY_PATH, Resource
from gpuherd.simcluster.watch import WatchParams, stream

Obj = dict[str, Any]
ADMIN_EXPIRE = "/simcluster/v1/expire-history"


class Route:
    """A parsed resource path: /api/v1/namespaces/NS/pods/NAME/SUB and its cluster-wide forms."""

    def __init__(
        self, res: Resource, namespace: str | None, name: str | None, sub: str | None
    ) -> None:
        self.res, self.namespace, self.name, self.sub = res, namespace, name, sub


def parse_route(path: str) -> Route | None:
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces" and (group, version, rest[2]) in BY_PATH:
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        return None
    res = BY_PATH.get((group, version, rest[0]))
    if res is None or (namespace is not None and not res.namespaced):
        return None
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if sub is not None and sub not in res.subresources:
        return None
    return Route(res, namespace, name, sub)


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, api: Api, port: int, *, bookmark_interval: float = 10.0) -> None:
        self.api = api
        self.bookmark_interval = bookmark_interval
        self.stopping = threading.Event()
        super().__init__(("127.0.0.1", port), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, delayed ACKs add 40 ms to each.
    disable_nagle_algorithm = True
    server: ApiServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # plumbing --------------------------------------------------------------------------------
    def _reply(self, code: int, body: Obj | str, content_type: str = "application/json") -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise errors.bad_request(f"the body is not valid JSON: {exc}") from exc

    def _query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}

    def _dispatch(self, method: str) -> None:
        try:
            self._route(method)
        except errors.ApiError as exc:
            self._reply(exc.code, exc.status())
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # routes ----------------------------------------------------------------------------------
    def _route(self, method: str) -> None:
        path = urlsplit(self.path).path.rstrip("/") or "/"
        if method == "GET":
            found = discovery.document(path)
            if found is not None:
                self._reply(200, found)
                return
            if path in ("/healthz", "/readyz", "/livez"):
                self._reply(200, "ok", "text/plain")
                return
        if method == "POST" and path == ADMIN_EXPIRE:
            self._reply(200, {"compacted": self.server.api.store.expire_history()})
            return
        route = parse_route(path)
        if route is None:
            raise errors.ApiError(404, "the server could not find the requested resource")
        query = self._query()
        if route.name is None:
            self._collection(method, route, query)
        else:
            self._item(method, route, query)

    def _list_query(self, route: Route, query: dict[str, str]) -> ListQuery:
        limit = query.get("limit")
        return ListQuery(
            namespace=route.namespace,
            label_selector=query.get("labelSelector"),
            field_selector=query.get("fieldSelector"),
            resource_version=query.get("resourceVersion"),
            version_match=query.get("resourceVersionMatch"),
            limit=int(limit) if limit else None,
            continue_token=query.get("continue"),
        )

    def _collection(self, method: str, route: Route, query: dict[str, str]) -> None:
        api = self.server.api
        if method == "GET" and query.get("watch") in ("true", "1"):
            self._watch(route, query)
        elif method == "GET":
            self._reply(200, api.list(route.res, self._list_query(route, query)))
        elif method == "POST":
            if route.res.namespaced and route.namespace is None:
                raise errors.ApiError(
                    405, "the server does not allow this method on the requested resource"
                )
            self._reply(201, api.create(route.res, route.namespace or "", self._body()))
        elif method == "DELETE":
            self._reply(
                200, api.delete_collection(route.res, self._list_query(route, query), self._body())
            )
        else:
            raise errors.ApiError(
                405, "the server does not allow this method on the requested resource"
            )

    def _item(self, method: str, route: Route, query: dict[str, str]) -> None:
        api, res, ns, name = self.server.api, route.res, route.namespace or "", route.name or ""
        if route.sub == "log" and method == "GET":
            self._log(ns, name, query)
        elif method == "GET" and route.sub == "scale":
            self._reply(200, api.scale(res, ns, name))
        elif method == "GET":
            self._reply(200, api.get(res, ns, name))
        elif method == "PUT":
            self._reply(200, api.replace(res, ns, name, self._body(), subresource=route.sub))
        elif method == "PATCH":
            content_type = self.headers.get("Content-Type", "")
            self._reply(
                200, api.patch(res, ns, name, content_type, self._body(), subresource=route.sub)
            )
        elif method == "DELETE" and route.sub is None:
            options = self._body()
            if "gracePeriodSeconds" in query:
                options["gracePeriodSeconds"] = int(query["gracePeriodSeconds"])
            self._reply(200, api.delete(res, ns, name, options))
        else:
            raise errors.ApiError(
                405, "the server does not allow this method on the requested resource"
            )

    def _log(self, namespace: str, name: str, query: dict[str, str]) -> None:
        api, container = self.server.api, query.get("container")
        tail = int(query["tailLines"]) if query.get("tailLines") else None
        if query.get("follow") not in ("true", "1"):
            self._reply(200, api.log(namespace, name, container, tail), "text/plain")
            return
        source = api.follow_log(namespace, name, container)
        if source is None:  # not started yet: the same answer as without follow
            api.log(namespace, name, container, tail)
            return
        self._start_stream("text/plain")
        try:
            for chunk in logs.follow(source, self.server.stopping.is_set):
                self._chunk(chunk)
            self._end_stream()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _start_stream(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _watch(self, route: Route, query: dict[str, str]) -> None:
        params = WatchParams(
            query=self._list_query(route, query),
            bookmarks=query.get("allowWatchBookmarks") in ("true", "1"),
            timeout=float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None,
            bookmark_interval=self.server.bookmark_interval,
        )
        self._start_stream("application/json")

        def send(event: Obj) -> None:
            self._chunk((json.dumps(event) + "\n").encode())

        try:
            stream(self.server.api.store, route.res, params, send, self.server.stopping.is_set)
            self._end_stream()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
