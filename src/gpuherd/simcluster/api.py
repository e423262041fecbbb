"""The API operations behind the HTTP routes: get, list, create, update, patch, delete, scale
and log, with the real server's rules (defaults, validation, versions, graceful pod deletion)."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gpuherd.simcluster import defaults, errors, logs
from gpuherd.simcluster.immutable import check_update
from gpuherd.simcluster.patch import apply_patch
from gpuherd.simcluster.resources import Resource
from gpuherd.simcluster.selectors import (
    parse_field_selector,
    parse_label_selector,
    selector_string,
)
from gpuherd.simcluster.store import Store
from gpuherd.simcluster.validate import check_event, check_schema, check_semantics

Obj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ListQuery:
    namespace: str | None = None
    label_selector: str | None = None
    field_selector: str | None = None
    resource_version: str | None = None
    version_match: str | None = None
    limit: int | None = None
    continue_token: str | None = None


def matcher(res: Resource, query: ListQuery) -> Callable[[Obj], bool]:
    labels = parse_label_selector(query.label_selector)
    fields = parse_field_selector(query.field_selector, res.kind)
    return lambda o: labels((o.get("metadata") or {}).get("labels") or {}) and fields(o)


class Api:
    def __init__(self, store: Store, *, validate: bool = True) -> None:
        self.store = store
        self.validate = validate
        self.log_source: logs.Finder = lambda _ns, _name, _container: None

    # reads -----------------------------------------------------------------------------------
    def get(self, res: Resource, namespace: str, name: str) -> Obj:
        return self.store.get(res, namespace, name)

    def list(self, res: Resource, query: ListQuery) -> Obj:
        where = matcher(res, query)
        start, rv = "", None
        if query.continue_token:
            rv, start = _decode_continue(query.continue_token)
        elif query.version_match == "Exact" and query.resource_version:
            rv = int(query.resource_version)
        if rv is not None:
            items = [
                o
                for o in self.store.state_at(res, rv)
                if (query.namespace is None or o["metadata"].get("namespace") == query.namespace)
                and where(o)
            ]
        else:
            items, rv = self.store.list(res, query.namespace, where)
        items = [o for o in items if _sort_key(o) > start] if start else items
        meta: Obj = {"resourceVersion": str(rv)}
        if query.limit and len(items) > query.limit:
            items = items[: query.limit]
            meta["continue"] = _encode_continue(rv, _sort_key(items[-1]))
            meta["remainingItemCount"] = 0  # not tracked; the field's presence is what matters
        return {
            "kind": f"{res.kind}List",
            "apiVersion": res.api_version,
            "metadata": meta,
            "items": items,
        }

    def log(self, namespace: str, name: str, container: str | None, tail: int | None) -> str:
        pod = self.store.get(_res("Pod"), namespace, name)
        chosen = self._container(pod, container)
        return logs.whole(self.log_source(namespace, name, chosen), name, chosen, tail)

    def follow_log(self, namespace: str, name: str, container: str | None) -> logs.LogSource | None:
        pod = self.store.get(_res("Pod"), namespace, name)
        return self.log_source(namespace, name, self._container(pod, container))

    @staticmethod
    def _container(pod: Obj, container: str | None) -> str:
        names = [c["name"] for c in pod["spec"].get("containers") or []]
        if container is None:
            if len(names) != 1:
                raise errors.bad_request(
                    f"a container name must be specified for pod {pod['metadata']['name']}, "
                    f"choose one of: [{' '.join(names)}]"
                )
            return str(names[0])
        if container not in names:
            raise errors.bad_request(
                f"container {container} is not valid for pod {pod['metadata']['name']}"
            )
        return container

    # writes ----------------------------------------------------------------------------------
    def create(self, res: Resource, namespace: str, body: Obj) -> Obj:
        if not isinstance(body, dict):
            raise errors.bad_request("the body must be a JSON object")
        obj = copy.deepcopy(body)
        obj.setdefault("apiVersion", res.api_version)
        obj.setdefault("kind", res.kind)
        if obj["kind"] != res.kind or obj["apiVersion"] != res.api_version:
            raise errors.bad_request(
                f"the API version in the data ({obj['apiVersion']}) does not match the expected "
                f"API version ({res.api_version})"
            )
        meta = obj.setdefault("metadata", {})
        if res.namespaced and meta.get("namespace") not in (None, namespace):
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on "
                "the request"
            )
        if self.validate and res.builtin:
            check_schema(obj)
        check_semantics(obj)
        if res.kind == "Event":
            check_event(obj, str(meta.get("namespace") or namespace))
        obj.pop("status", None)
        defaults.apply(obj)
        created = self.store.create(res, obj, namespace)
        if res.kind == "Job":
            return self.store.mutate(
                res, namespace, created["metadata"]["name"], defaults.job_labels
            )
        return created

    def replace(
        self,
        res: Resource,
        namespace: str,
        name: str,
        body: Obj,
        *,
        subresource: str | None = None,
    ) -> Obj:
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if meta.get("name") not in (None, name):
            raise errors.bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL "
                f"({name})"
            )
        meta["name"] = name
        if res.namespaced:
            meta["namespace"] = namespace
        if subresource == "scale":
            return self._set_scale(res, namespace, name, obj)
        if subresource is None:
            with self.store.lock:
                check_update(res, self.store.get(res, namespace, name), obj)
                return self.store.update(res, obj)
        return self.store.update(res, obj, subresource=subresource)

    def patch(
        self,
        res: Resource,
        namespace: str,
        name: str,
        content_type: str,
        patch: Any,
        *,
        subresource: str | None = None,
    ) -> Obj:
        with self.store.lock:
            if subresource == "scale":
                current = self.scale(res, namespace, name)
            else:
                current = self.store.get(res, namespace, name)
            patched = apply_patch(content_type, current, patch, strategic=res.builtin)
            if not isinstance(patched, dict):
                raise errors.bad_request("the patch must leave an object")
            # A version in the patch is a precondition; without one the patch applies to the
            # latest, as on the real server.
            patched.setdefault("metadata", {})
            given = _given_version(patch)
            patched["metadata"]["resourceVersion"] = given or current["metadata"]["resourceVersion"]
            return self.replace(res, namespace, name, patched, subresource=subresource)

    def delete(self, res: Resource, namespace: str, name: str, options: Obj) -> Obj:
        with self.store.lock:
            current = self.store.get(res, namespace, name)
            pre = options.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != current["metadata"]["uid"]:
                raise errors.ApiError(
                    409,
                    f"Precondition failed: UID in precondition: {pre['uid']}, UID in object "
                    f"meta: {current['metadata']['uid']}",
                    reason="Conflict",
                )
            if (
                pre.get("resourceVersion")
                and pre["resourceVersion"] != current["metadata"]["resourceVersion"]
            ):
                raise errors.conflict(res, name)
            if current["metadata"].get("finalizers"):
                return self.store.mark_deleting(res, namespace, name, 0)
            if res.kind == "Pod" and _graceful(current, options):
                grace = options.get("gracePeriodSeconds")
                if grace is None:
                    grace = current["spec"].get("terminationGracePeriodSeconds", 30)
                return self.store.mark_deleting(res, namespace, name, int(grace))
            if options.get("propagationPolicy") == "Orphan" or options.get("orphanDependents"):
                self._orphan(current["metadata"]["uid"])
            removed = self.store.remove(res, namespace, name)
            if res.kind == "Pod":
                return removed
            return {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {
                    "name": name,
                    "group": res.group,
                    "kind": res.plural,
                    "uid": removed["metadata"]["uid"],
                },
            }

    def _orphan(self, uid: str) -> None:
        """Drop ownerReferences to `uid`, so the garbage collector leaves the dependents."""
        for kind in ("ReplicaSet", "Pod", "Job"):
            res = _res(kind)
            for obj in self.store.list(res)[0]:
                refs = obj["metadata"].get("ownerReferences") or []
                if not any(r.get("uid") == uid for r in refs):
                    continue

                def drop(o: Obj) -> None:
                    kept = [
                        r for r in o["metadata"].get("ownerReferences") or [] if r.get("uid") != uid
                    ]
                    if kept:
                        o["metadata"]["ownerReferences"] = kept
                    else:
                        o["metadata"].pop("ownerReferences", None)

                self.store.mutate(
                    res, obj["metadata"].get("namespace", ""), obj["metadata"]["name"], drop
                )

    def delete_collection(self, res: Resource, query: ListQuery, options: Obj) -> Obj:
        listed = self.list(
            res, ListQuery(query.namespace, query.label_selector, query.field_selector)
        )
        for item in listed["items"]:
            meta = item["metadata"]
            try:
                self.delete(res, meta.get("namespace", ""), meta["name"], options)
            except errors.ApiError as exc:
                if exc.code != 404:
                    raise
        return listed

    # scale subresource ---------------------------------------------------------------------
    def scale(self, res: Resource, namespace: str, name: str) -> Obj:
        if "scale" not in res.subresources:
            raise errors.not_found(res, name)
        obj = self.store.get(res, namespace, name)
        meta = obj["metadata"]
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: meta[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in meta
            },
            "spec": {"replicas": obj["spec"].get("replicas", 1)},
            "status": {
                "replicas": (obj.get("status") or {}).get("replicas", 0),
                "selector": selector_string(obj["spec"].get("selector")),
            },
        }

    def _set_scale(self, res: Resource, namespace: str, name: str, scale: Obj) -> Obj:
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise errors.invalid(
                "Scale", name, "spec.replicas", "must be greater than or equal to 0", value=replicas
            )
        with self.store.lock:
            current = self.store.get(res, namespace, name)
            wanted = (scale.get("metadata") or {}).get("resourceVersion")
            if wanted and wanted != current["metadata"]["resourceVersion"]:
                raise errors.conflict(res, name)
            current["spec"]["replicas"] = replicas
            self.store.update(res, current, check_version=False)
            return self.scale(res, namespace, name)


def _graceful(pod: Obj, options: Obj) -> bool:
    """A bound pod that still runs is ended by its kubelet; others go at once."""
    if options.get("gracePeriodSeconds") == 0:
        return False
    phase = (pod.get("status") or {}).get("phase")
    return bool(pod["spec"].get("nodeName")) and phase not in ("Succeeded", "Failed")


def _given_version(patch: Any) -> str | None:
    if isinstance(patch, dict):
        return (patch.get("metadata") or {}).get("resourceVersion")
    if isinstance(patch, list):
        for op in patch:
            if op.get("path") == "/metadata/resourceVersion" and op.get("op") in ("add", "replace"):
                return str(op.get("value"))
    return None


def _sort_key(obj: Obj) -> str:
    meta = obj["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"


def _encode_continue(rv: int, start: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_continue(token: str) -> tuple[int, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(data["rv"]), str(data["start"])
    except (ValueError, KeyError, TypeError) as exc:
        raise errors.bad_request(f"continue key is not valid: {exc}") from exc


def _res(kind: str) -> Resource:
    from gpuherd.simcluster.resources import BY_KIND

    return BY_KIND[kind]
