"""The objects of the simulated cluster, with one global resourceVersion counter and a bounded
history of changes for watches (older versions expire as on a real API server)."""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from gpuherd.simcluster import errors
from gpuherd.simcluster.resources import BY_KIND, Resource

Obj = dict[str, Any]
T = TypeVar("T")
# Kinds whose metadata.generation counts changes to spec, as the real registry strategies do.
_GENERATION_KINDS = {"Deployment", "ReplicaSet", "StatefulSet", "Job", "HorizontalPodAutoscaler"}
_NS = BY_KIND["Namespace"]


def _clone(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def clone(value: T) -> T:
    """A deep copy of JSON data, about 2.5 times faster than copy.deepcopy."""
    return cast(T, _clone(value))


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def random_suffix(length: int = 5) -> str:
    # The apiserver's generateName alphabet leaves out vowels and look-alikes; any is fine here.
    return "".join(secrets.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(length))


@dataclass(frozen=True, slots=True)
class Event:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    resource: Resource
    obj: Obj
    prev: Obj | None  # the object before this change (None for ADDED)


Key = tuple[str, str]  # (namespace or "", name)
_List = list  # `Store.list` shadows the builtin inside the class body


class Store:
    """Thread-safe; every read returns copies, every write bumps the one counter."""

    def __init__(self, *, history: int = 10_000) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.rv = 1
        self.compacted = 1  # watches and exact lists from at or below this version get 410
        self._objects: dict[Resource, dict[Key, Obj]] = {}
        self._history: deque[Event] = deque(maxlen=history)
        self.closed = False

    # reads ---------------------------------------------------------------------------------
    def _bucket(self, res: Resource) -> dict[Key, Obj]:
        return self._objects.setdefault(res, {})

    def get(self, res: Resource, namespace: str, name: str) -> Obj:
        with self.lock:
            found = self._bucket(res).get((namespace if res.namespaced else "", name))
            if found is None:
                raise errors.not_found(res, name)
            return clone(found)

    def find(self, res: Resource, namespace: str, name: str) -> Obj | None:
        try:
            return self.get(res, namespace, name)
        except errors.ApiError:
            return None

    def list(
        self,
        res: Resource,
        namespace: str | None = None,
        where: Callable[[Obj], bool] | None = None,
        *,
        borrow: bool = False,
    ) -> tuple[_List[Obj], int]:
        """Matching objects in (namespace, name) order. `borrow=True` hands out the stored
        objects themselves, for readers that never change them (controllers, kubelets)."""
        with self.lock:
            items = [
                o
                for (ns, _n), o in sorted(self._bucket(res).items())
                if (namespace is None or ns == namespace) and (where is None or where(o))
            ]
            return (items if borrow else [clone(o) for o in items]), self.rv

    def state_at(self, res: Resource, rv: int) -> _List[Obj]:
        """The objects as they were at `rv`: current state with later changes undone."""
        with self.lock:
            if rv <= self.compacted and rv != self.rv:
                raise errors.expired("The resourceVersion for the provided list is too old.")
            state = {k: clone(o) for k, o in self._bucket(res).items()}
            for event in reversed(self._history):
                if event.rv <= rv:
                    break
                if event.resource != res:
                    continue
                key = _key(res, event.obj)
                if event.prev is None:
                    state.pop(key, None)
                else:
                    state[key] = clone(event.prev)
            return [state[k] for k in sorted(state)]

    # writes --------------------------------------------------------------------------------
    def _record(self, kind: str, res: Resource, obj: Obj, prev: Obj | None) -> None:
        if len(self._history) == self._history.maxlen:
            self.compacted = self._history[0].rv
        self._history.append(Event(self.rv, kind, res, clone(obj), prev))
        self.changed.notify_all()

    def _bump(self, obj: Obj) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)

    def create(self, res: Resource, obj: Obj, namespace: str = "") -> Obj:
        with self.lock:
            meta = obj.setdefault("metadata", {})
            if not meta.get("name"):
                if not meta.get("generateName"):
                    raise errors.invalid(
                        res.kind, "", "metadata.name", "name or generateName is required"
                    )
                meta["name"] = meta["generateName"] + random_suffix()
            if res.namespaced:
                meta["namespace"] = namespace or meta.get("namespace") or "default"
                if self.find(_NS, "", meta["namespace"]) is None:
                    raise errors.not_found(_NS, meta["namespace"])
            else:
                meta.pop("namespace", None)
            key = _key(res, obj)
            if key in self._bucket(res):
                raise errors.already_exists(res, meta["name"])
            obj["apiVersion"], obj["kind"] = res.api_version, res.kind
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_iso()
            for field in ("resourceVersion", "deletionTimestamp", "selfLink"):
                meta.pop(field, None)
            if res.kind in _GENERATION_KINDS:
                meta["generation"] = 1
            self._bump(obj)
            self._bucket(res)[key] = obj
            self._record("ADDED", res, obj, None)
            return clone(obj)

    def update(
        self,
        res: Resource,
        obj: Obj,
        *,
        subresource: str | None = None,
        check_version: bool = True,
    ) -> Obj:
        """Replace an object. A given metadata.resourceVersion must be the current one (409).
        The main resource keeps the stored status, the status subresource keeps the rest."""
        with self.lock:
            meta = obj.get("metadata") or {}
            key = (meta.get("namespace", "") if res.namespaced else "", meta.get("name", ""))
            current = self._bucket(res).get(key)
            if current is None:
                raise errors.not_found(res, key[1])
            wanted = meta.get("resourceVersion")
            if check_version and wanted and wanted != current["metadata"]["resourceVersion"]:
                raise errors.conflict(res, key[1])
            new = clone(obj)
            if subresource == "status":
                merged = clone(current)
                merged["status"] = new.get("status", {})
                new = merged
            elif res.has_status and "status" in current:
                new["status"] = clone(current["status"])
            elif res.has_status:
                new.pop("status", None)
            new["apiVersion"], new["kind"] = res.api_version, res.kind
            kept = (
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "generation",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "resourceVersion",
            )
            new_meta = new.setdefault("metadata", {})
            for field in kept:
                if field in current["metadata"]:
                    new_meta[field] = current["metadata"][field]
                else:
                    new_meta.pop(field, None)
            if new == current:
                return clone(current)  # a no-op write keeps the version, as the real one
            if res.kind in _GENERATION_KINDS and new.get("spec") != current.get("spec"):
                new_meta["generation"] = int(current["metadata"].get("generation", 1)) + 1
            return self._replace(res, key, new, current)

    def _replace(self, res: Resource, key: Key, new: Obj, current: Obj) -> Obj:
        meta = new["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and res.kind != "Pod":
            return self.remove(res, key[0], key[1])
        self._bump(new)
        self._bucket(res)[key] = new
        self._record("MODIFIED", res, new, clone(current))
        return clone(new)

    def mutate(
        self, res: Resource, namespace: str, name: str, change: Callable[[Obj], None]
    ) -> Obj:
        """Read-modify-write under the lock (controllers and kubelets; no version check)."""
        with self.lock:
            current = self.get(res, namespace, name)
            change(current)
            key = _key(res, current)
            stored = self._bucket(res)[key]
            if current == stored:
                return current
            return self._replace(res, key, current, clone(stored))

    def mark_deleting(self, res: Resource, namespace: str, name: str, grace: int) -> Obj:
        def mark(obj: Obj) -> None:
            meta = obj["metadata"]
            meta.setdefault("deletionTimestamp", now_iso())
            meta["deletionGracePeriodSeconds"] = min(
                grace, meta.get("deletionGracePeriodSeconds", grace)
            )

        return self.mutate(res, namespace, name, mark)

    def remove(self, res: Resource, namespace: str, name: str) -> Obj:
        with self.lock:
            key = (namespace if res.namespaced else "", name)
            current = self._bucket(res).pop(key, None)
            if current is None:
                raise errors.not_found(res, name)
            prev = clone(current)
            self._bump(current)
            self._record("DELETED", res, current, prev)
            return clone(current)

    # watch history -------------------------------------------------------------------------
    def events_after(self, rv: int) -> _List[Event]:
        """Changes after `rv`, oldest first; 410 when the history no longer reaches back."""
        with self.lock:
            if rv < self.compacted:
                raise errors.expired(f"too old resource version: {rv} ({self.rv})")
            return [e for e in self._history if e.rv > rv]

    def expire_history(self) -> int:
        """Forget every change so far, as compaction does; returns the new oldest version."""
        with self.lock:
            self._history.clear()
            self.compacted = self.rv
            self.changed.notify_all()
            return self.compacted

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.changed.notify_all()


def _key(res: Resource, obj: Obj) -> Key:
    meta = obj["metadata"]
    return (meta.get("namespace", "") if res.namespaced else "", meta["name"])
