"""Watch streams: events after a resourceVersion, filtered like the watch cache filters them,
with bookmarks, timeouts, and 410 Expired as an in-stream ERROR event."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gpuherd.simcluster import errors
from gpuherd.simcluster.api import ListQuery, matcher
from gpuherd.simcluster.resources import Resource
from gpuherd.simcluster.store import Store

Obj = dict[str, Any]
DEFAULT_TIMEOUT = 1800.0  # the real server picks 30-60 minutes when the client gives none


@dataclass(frozen=True, slots=True)
class WatchParams:
    query: ListQuery
    bookmarks: bool = False
    timeout: float | None = None
    bookmark_interval: float = 10.0


def _bookmark(res: Resource, rv: int) -> Obj:
    return {
        "type": "BOOKMARK",
        "object": {
            "kind": res.kind,
            "apiVersion": res.api_version,
            "metadata": {"resourceVersion": str(rv)},
        },
    }


def _in_namespace(obj: Obj, namespace: str | None) -> bool:
    return namespace is None or obj["metadata"].get("namespace") == namespace


def stream(  # noqa: PLR0912 - the watch cache's filtering rules read best in one place
    store: Store,
    res: Resource,
    params: WatchParams,
    send: Callable[[Obj], None],
    stopping: Callable[[], bool],
) -> None:
    """Call `send` with each watch event until the timeout, a stop, or a 410."""
    where = matcher(res, params.query)
    namespace = params.query.namespace
    deadline = time.monotonic() + (params.timeout if params.timeout else DEFAULT_TIMEOUT)
    given = params.query.resource_version
    if not given or given == "0":
        # No version: the current state as ADDED events, then the changes after it.
        items, pos = store.list(res, namespace, where)
        for item in items:
            send({"type": "ADDED", "object": item})
    else:
        try:
            pos = int(given)
        except ValueError:
            send(_error(errors.bad_request(f"invalid resource version: {given!r}")))
            return
    next_bookmark = time.monotonic() + params.bookmark_interval
    while not stopping():
        out: list[Obj] = []
        with store.lock:
            try:
                events = store.events_after(pos)
            except errors.ApiError as exc:
                send(_error(exc))
                return
            for event in events:
                if event.resource != res:
                    continue
                now_in = (
                    event.type != "DELETED"
                    and _in_namespace(event.obj, namespace)
                    and where(event.obj)
                )
                was_in = (
                    event.prev is not None
                    and _in_namespace(event.prev, namespace)
                    and where(event.prev)
                )
                if now_in:
                    out.append({"type": "MODIFIED" if was_in else "ADDED", "object": event.obj})
                elif was_in:
                    out.append({"type": "DELETED", "object": event.obj})
            pos = store.rv
            if not out and not events:
                wait = min(deadline, next_bookmark) - time.monotonic()
                store.changed.wait(timeout=max(0.0, min(wait, 0.5)))
            closed = store.closed
        for item in out:
            send(item)
        now = time.monotonic()
        if closed or now >= deadline:
            return
        if params.bookmarks and now >= next_bookmark:
            send(_bookmark(res, pos))
            next_bookmark = now + params.bookmark_interval


def _error(exc: errors.ApiError) -> Obj:
    return {"type": "ERROR", "object": exc.status()}
