"""Objects kept current by one watch each: this node's pods (field selector `spec.nodeName`),
the Jobs queued for gpuherd (label `gpuherd.io/queue`).

List once, then watch from the list's resourceVersion with bookmarks; the bookmarks keep the
version fresh so a reconnect rarely needs the list again. When the version expired (410 Gone,
on the request or as an ERROR event in the stream) the cache lists again and resumes. In steady
state no LIST is ever repeated: `lists` counts them for the tests and the benchmark.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from gpuherd.gpu.attribution import PodInfo
from gpuherd.k8s.client import Gone, KubeClient, KubeError

Obj = dict[str, Any]
log = logging.getLogger(__name__)
_WATCH_SECONDS = 300  # the server ends a watch after this; it is reopened from the last version
_REMEMBER = 256  # deleted objects kept (their last state) for who asks how they ended


class Cache:
    def __init__(
        self,
        client: KubeClient,
        resource: str,
        *,
        node: str | None = None,
        labels: str | None = None,
        on_change: Callable[[], None] | None = None,
        watch_seconds: int = _WATCH_SECONDS,
    ) -> None:
        self.client, self.resource, self.on_change = client, resource, on_change
        self.node, self.labels = node, labels
        self.watch_seconds = watch_seconds
        self._pods: dict[str, Obj] = {}
        # The last state of objects deleted lately: a Job deleted right after it ended (its own
        # ttl, a person) and its pods still tell how it ended.
        self._removed: OrderedDict[str, Obj] = OrderedDict()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.synced = threading.Event()
        self.version = ""
        self.lists = 0  # LISTs made: one at start, one per expired version
        self.gone = 0  # 410s met
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        name = f"gpuherd-watch-{self.resource}"
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    # --- reads ----------------------------------------------------------------------------
    def items(self) -> list[Obj]:
        with self._lock:
            return list(self._pods.values())

    def pods(self) -> list[Obj]:
        return self.items()

    def get(self, namespace: str | None, name: str) -> Obj | None:
        """The object as the watch last saw it (None: not seen, or gone)."""
        with self._lock:
            for obj in self._pods.values():
                meta = obj["metadata"]
                if meta["name"] == name and meta.get("namespace") == namespace:
                    return obj
        return None

    def removed(self) -> list[Obj]:
        """Objects deleted lately, as the watch last saw them (the newest _REMEMBER)."""
        with self._lock:
            return list(self._removed.values())

    def infos(self) -> dict[str, PodInfo]:
        """uid -> namespace, name, labels: what attribution needs to match `pod:` tenants."""
        with self._lock:
            return {
                uid: PodInfo(
                    namespace=p["metadata"].get("namespace", ""),
                    name=p["metadata"]["name"],
                    labels=dict(p["metadata"].get("labels") or {}),
                    ip=(p.get("status") or {}).get("podIP"),
                )
                for uid, p in self._pods.items()
            }

    # --- the loop -------------------------------------------------------------------------
    def _list(self) -> None:
        found = self.client.list_objects(self.resource, node=self.node, labels=self.labels)
        self.lists += 1
        with self._lock:
            self._pods = {p["metadata"]["uid"]: p for p in found.get("items") or []}
        self.version = str(found["metadata"]["resourceVersion"])
        self.synced.set()
        if self.on_change is not None:
            self.on_change()

    def _apply(self, event: Obj) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        meta = obj.get("metadata") or {}
        if meta.get("resourceVersion"):
            self.version = str(meta["resourceVersion"])
        if kind == "BOOKMARK":
            return
        with self._lock:
            if kind == "DELETED":
                last = self._pods.pop(meta.get("uid", ""), None)
                self._removed[meta.get("uid", "")] = obj or last or {}
                while len(self._removed) > _REMEMBER:
                    self._removed.popitem(last=False)
            elif kind in ("ADDED", "MODIFIED"):
                self._pods[meta["uid"]] = obj
        if self.on_change is not None:
            self.on_change()

    def _run(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                if not self.version:
                    self._list()
                for event in self.client.watch(
                    self.resource,
                    self.version,
                    node=self.node,
                    labels=self.labels,
                    timeout=self.watch_seconds,
                ):
                    self._apply(event)
                    backoff = 0.2
                    if self._stop.is_set():
                        return
            except Gone as exc:
                self.gone += 1
                log.warning("%s watch: %s (410 Gone): listing again", self.resource, exc.message)
                self.version = ""  # list again, then watch from there
            except KubeError:
                self._stop.wait(backoff)  # the server is away: resume from the last version
                backoff = min(backoff * 2, 10.0)


class PodCache(Cache):
    """This node's pods."""

    def __init__(
        self,
        client: KubeClient,
        node: str,
        *,
        on_change: Callable[[], None] | None = None,
        watch_seconds: int = _WATCH_SECONDS,
    ) -> None:
        super().__init__(
            client, "pods", node=node, on_change=on_change, watch_seconds=watch_seconds
        )
