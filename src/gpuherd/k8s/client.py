"""The one module that talks to the Kubernetes API, through the official client.

Everything above it sees plain JSON objects (`dict`s with the API's own camelCase keys, as
`kubectl get -o json` prints them) and a handful of errors: `NotFound`, `Conflict` (409: a stale
resourceVersion, an object that exists), `Gone` (410: a watch's version fell out of the
server's history) and `KubeError` for the rest. No other gpuherd module imports `kubernetes`
(an import-linter contract), so a change of client version touches this file only.

The official client's `ApiClient` and `kubernetes.config` do the work (kubeconfig or service
account, auth and its refresh, TLS, proxies, timeouts), but the generated `CoreV1Api`,
`AppsV1Api`... are never made: importing one imports the pydantic models named in its type
hints (250 modules for CoreV1Api, about 30 MB resident), and gpuherd reads raw JSON anyway.
Each method names its REST path and `_send` builds the request as the generated methods do
(`param_serialize`, the same query parameters in the same order, Accept, Content-Type for
patches, the BearerToken auth setting), so what goes on the wire is what they send. One
difference: a create or replace body goes out as the `dict` it is, where a generated method
first validated it into its model (key order, timestamps as `+00:00`, and a field the model
does not know refused in the client rather than by the server).

Every call is counted in `requests` (a watch counts once when opened): the benchmark's "API
requests per minute while idle" reads it.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from urllib3.exceptions import HTTPError as TransportError

Obj = dict[str, Any]
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
_SCALE_ATTEMPTS = 8
_PAGE = 500  # objects per LIST page (`limit`), as kubectl asks
_SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
_LIST_TIMEOUT = (10, 120)  # seconds: connect, read one page
# What every generated method sends: the first JSON type of its Accept list, and its one auth
# setting (the kubeconfig's or service account's token; none with client certificates).
_ACCEPT = "application/json"
_AUTH = ["BearerToken"]
# resource -> (apiVersion, namespaced): the collections `list_all` pages through
_RESOURCES: dict[str, tuple[str, bool]] = {
    "namespaces": ("v1", False),
    "nodes": ("v1", False),
    "pods": ("v1", True),
    "configmaps": ("v1", True),
    "persistentvolumes": ("v1", False),
    "persistentvolumeclaims": ("v1", True),
    "deployments": ("apps/v1", True),
    "statefulsets": ("apps/v1", True),
    "daemonsets": ("apps/v1", True),
    "replicasets": ("apps/v1", True),
    "jobs": ("batch/v1", True),
    "cronjobs": ("batch/v1", True),
    "storageclasses": ("storage.k8s.io/v1", False),
    "runtimeclasses": ("node.k8s.io/v1", False),
    "leases": ("coordination.k8s.io/v1", True),
}
# listed and watched in all namespaces
_WATCHED = ("pods", "jobs", "deployments", "statefulsets", "leases", "nodes")
_WORKLOADS = {"Deployment": "deployments", "StatefulSet": "statefulsets"}


class KubeError(Exception):
    """An API call failed; `status` is the HTTP status (0: no answer at all)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class NotFound(KubeError):
    pass


class Conflict(KubeError):
    pass


class Gone(KubeError):
    pass


class ConfigError(Exception):
    """No usable kubeconfig or in-cluster service account."""


@dataclass(frozen=True, slots=True)
class Ref:
    """A scalable workload: Deployment or StatefulSet."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind.lower()}/{self.namespace}/{self.name}"


def _error(exc: ApiException) -> KubeError:
    status = int(exc.status or 0)
    message = str(exc.reason or "")
    body = exc.body
    if body:
        with contextlib.suppress(ValueError, AttributeError):
            message = str(json.loads(body).get("message") or message)
    kind = {404: NotFound, 409: Conflict, 410: Gone}.get(status, KubeError)
    return kind(status, message)


def _root(api_version: str) -> str:
    """`/api/v1` for the core group, `/apis/<group>/<version>` for the others."""
    return "/api/v1" if api_version == "v1" else f"/apis/{api_version}"


def _collection(resource: str, namespace: str | None) -> str:
    """The LIST path of `resource`: in `namespace`, else in all namespaces (or cluster-scoped)."""
    api_version, namespaced = _RESOURCES[resource]
    if namespaced and namespace is not None:
        return f"{_root(api_version)}/namespaces/{{namespace}}/{resource}"
    return f"{_root(api_version)}/{resource}"


def _list_query(
    *,
    bookmarks: bool | None = None,
    token: str | None = None,
    node: str | None = None,
    labels: str | None = None,
    limit: int | None = None,
    version: str | None = None,
    timeout: int | None = None,
    watch: bool | None = None,
) -> list[tuple[str, Any]]:
    """A LIST's query parameters in the order the generated `list_*` methods write them."""
    given = [
        ("allowWatchBookmarks", bookmarks),
        ("continue", token),
        ("fieldSelector", None if node is None else f"spec.nodeName={node}"),
        ("labelSelector", labels),
        ("limit", limit),
        ("resourceVersion", version),
        ("timeoutSeconds", timeout),
        ("watch", watch),
    ]
    return [(key, value) for key, value in given if value is not None]


class KubeClient:
    """Typed calls over the official client's `ApiClient`, answering raw JSON."""

    def __init__(self, api_client: Any) -> None:
        self.api_client = api_client
        self.lock = threading.Lock()
        self.requests = 0
        self.conflicts = 0  # 409s met by `scale` and retried
        self.namespace = "default"  # the context's namespace (the service account's in a pod)

    @property
    def server(self) -> str:
        return str(self.api_client.configuration.host)

    @classmethod
    def load(cls, kubeconfig: Path | None = None, *, context: str | None = None) -> KubeClient:
        """A kubeconfig file when given (or $KUBECONFIG, then ~/.kube/config) at its current
        context or `context`; in a pod without either, the service account."""
        try:
            if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
                k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
                made = cls(k8s.ApiClient())
                with contextlib.suppress(OSError):
                    made.namespace = _SA_NAMESPACE.read_text().strip() or made.namespace
                return made
            path = str(kubeconfig) if kubeconfig is not None else None
            made = cls(k8s_config.new_client_from_config(path, context=context))  # type: ignore[no-untyped-call]
            contexts, active = k8s_config.list_kube_config_contexts(path)  # type: ignore[no-untyped-call]
            chosen = next((c for c in contexts if c.get("name") == context), None) or active
            made.namespace = str((chosen.get("context") or {}).get("namespace") or "default")
            return made
        except (ConfigException, OSError, TypeError, ValueError, AttributeError) as exc:
            where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
            raise ConfigError(f"cannot load the Kubernetes config {where}: {exc}") from None

    def close(self) -> None:
        self.api_client.close()

    # --- the call path ---------------------------------------------------------------------
    def _send(
        self,
        method: str,
        path: str,
        names: dict[str, str] | None = None,
        *,
        query: list[tuple[str, Any]] | None = None,
        body: Obj | None = None,
        content_type: str | None = None,
        timeout: Any = None,
    ) -> Any:
        """One counted request to `path`, its `{namespace}`/`{name}` filled (URL-quoted) from
        `names`; answers the urllib3 response with its body unread. A status outside 2xx
        raises the KubeError it maps to; no answer at all raises KubeError(0, ...)."""
        with self.lock:
            self.requests += 1
        headers = {"Accept": _ACCEPT}
        if content_type is not None:
            headers["Content-Type"] = content_type
        api = self.api_client
        try:
            request = api.param_serialize(
                method=method,
                resource_path=path,
                path_params=names,
                query_params=query or [],
                header_params=headers,
                body=body,
                post_params=[],
                files={},
                auth_settings=_AUTH,
                collection_formats={},
            )
            resp = api.call_api(*request, _request_timeout=timeout)
            if not 200 <= resp.status <= 299:
                resp.read()  # as the generated methods do: the Status body names the reason
                raise ApiException(http_resp=resp)
        except ApiException as exc:  # also TLS failures (status 0)
            raise _error(exc) from None
        except OSError as exc:  # reset midway
            raise KubeError(0, f"the API server did not answer: {exc}") from None
        except TransportError as exc:  # refused, unresolvable, TLS: urllib3 gave up retrying
            raise self._unanswered(exc) from None
        return resp.response

    def _unanswered(self, exc: TransportError) -> KubeError:
        reason = getattr(exc, "reason", None) or exc
        return KubeError(0, f"the API server {self.server} did not answer: {reason}")

    def _json(self, method: str, path: str, names: dict[str, str] | None = None, **kw: Any) -> Obj:
        """`_send`, answering the body as JSON (`{}` when empty)."""
        resp = self._send(method, path, names, **kw)
        try:
            data = resp.data
        except OSError as exc:
            raise KubeError(0, f"the API server did not answer: {exc}") from None
        except TransportError as exc:
            raise self._unanswered(exc) from None
        return dict(json.loads(data)) if data else {}

    # --- any object (what `kubectl create` does) --------------------------------------------
    def create(
        self,
        api_version: str,
        kind_plural: str,
        namespace: str | None,
        body: Obj,
        *,
        timeout: float | None = None,
    ) -> Obj:
        """POST `body` to its collection, e.g. `create("apps/v1", "deployments", "media", d)`;
        `namespace` None for a cluster-scoped kind (`create("v1", "namespaces", None, ns)`).
        `timeout`: seconds for the whole request."""
        root = _root(api_version)
        if namespace is None:
            return self._json("POST", f"{root}/{kind_plural}", body=body, timeout=timeout)
        path = f"{root}/namespaces/{{namespace}}/{kind_plural}"
        return self._json("POST", path, {"namespace": namespace}, body=body, timeout=timeout)

    # --- workloads -------------------------------------------------------------------------
    def _workload(self, ref: Ref, tail: str = "") -> tuple[str, dict[str, str]]:
        if ref.kind not in _WORKLOADS:
            raise KubeError(400, f"{ref.kind} is not a scalable workload gpuherd knows")
        path = f"/apis/apps/v1/namespaces/{{namespace}}/{_WORKLOADS[ref.kind]}/{{name}}{tail}"
        return path, {"namespace": ref.namespace, "name": ref.name}

    def get_workload(self, ref: Ref) -> Obj:
        return self._json("GET", *self._workload(ref))

    def patch_workload(self, ref: Ref, patch: Obj) -> Obj:
        """A JSON merge patch (a None value removes the key)."""
        return self._json("PATCH", *self._workload(ref), body=patch, content_type=MERGE)

    def list_workloads(self, kind: str, namespace: str | None = None) -> list[Obj]:
        path = _collection(_WORKLOADS[kind], namespace)
        names = None if namespace is None else {"namespace": namespace}
        return list(self._json("GET", path, names).get("items") or [])

    def read_scale(self, ref: Ref) -> tuple[int, str]:
        """Its `spec.replicas` through the scale subresource, with the resourceVersion."""
        scale = self._json("GET", *self._workload(ref, "/scale"))
        return int((scale.get("spec") or {}).get("replicas") or 0), str(
            scale["metadata"]["resourceVersion"]
        )

    def write_scale(self, ref: Ref, replicas: int, resource_version: str) -> None:
        """PUT the scale with a resourceVersion precondition: 409 if anyone wrote since."""
        body = {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {
                "name": ref.name,
                "namespace": ref.namespace,
                "resourceVersion": resource_version,
            },
            "spec": {"replicas": replicas},
        }
        self._json("PUT", *self._workload(ref, "/scale"), body=body)

    def patch_scale(self, ref: Ref, replicas: int) -> None:
        """Set its replicas whatever they are now (a merge patch of the scale)."""
        body = {"spec": {"replicas": replicas}}
        self._json("PATCH", *self._workload(ref, "/scale"), body=body, content_type=MERGE)

    def scale(self, ref: Ref, replicas: int) -> int:
        """Set its replicas; on 409 read again and retry. Returns the replicas it had before."""
        for _ in range(_SCALE_ATTEMPTS):
            before, version = self.read_scale(ref)
            try:
                self.write_scale(ref, replicas, version)
            except Conflict:
                with self.lock:
                    self.conflicts += 1
                continue
            return before
        raise Conflict(409, f"{ref}: the scale kept changing under us ({_SCALE_ATTEMPTS} tries)")

    # --- pods ------------------------------------------------------------------------------
    def list_pods(
        self, *, node: str | None = None, namespace: str | None = None, labels: str | None = None
    ) -> Obj:
        """The pod list (with `metadata.resourceVersion`), on one node when `node` is given."""
        names = None if namespace is None else {"namespace": namespace}
        query = _list_query(node=node, labels=labels)
        return self._json("GET", _collection("pods", namespace), names, query=query)

    def list_objects(
        self, resource: str, *, node: str | None = None, labels: str | None = None
    ) -> Obj:
        """All namespaces' pods, jobs, deployments or statefulsets (a list with its
        `metadata.resourceVersion`)."""
        query = _list_query(node=node, labels=labels)
        return self._json("GET", self._all_namespaces(resource), query=query)

    @staticmethod
    def _all_namespaces(resource: str) -> str:
        if resource not in _WATCHED:
            raise ValueError(f"no watch for {resource}")
        return _collection(resource, None)

    def watch(
        self,
        resource: str,
        resource_version: str,
        *,
        node: str | None = None,
        labels: str | None = None,
        timeout: int,
    ) -> Iterator[Obj]:
        """Watch events from `resource_version` with bookmarks, as raw `{type, object}` dicts.
        Raises Gone when the version expired, on the request or as an ERROR event inside the
        stream (a real server does both)."""
        query = _list_query(
            bookmarks=True,
            node=node,
            labels=labels,
            version=resource_version,
            timeout=timeout,
            watch=True,
        )
        resp = self._send("GET", self._all_namespaces(resource), query=query)
        try:
            pending = b""
            for chunk in resp.stream(amt=None, decode_content=False):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        code = int(status.get("code") or 500)
                        kind = Gone if code == 410 else KubeError
                        raise kind(code, str(status.get("message") or status.get("reason")))
                    yield event
        except (OSError, TransportError) as exc:  # the stream broke: resume from the version
            raise KubeError(0, f"the watch stream broke: {exc}") from None
        finally:
            resp.close()
            resp.release_conn()

    def watch_pods(self, node: str, resource_version: str, *, timeout: int) -> Iterator[Obj]:
        return self.watch("pods", resource_version, node=node, timeout=timeout)

    def _pod(self, namespace: str, name: str, tail: str = "") -> tuple[str, dict[str, str]]:
        return f"/api/v1/namespaces/{{namespace}}/pods/{{name}}{tail}", {
            "namespace": namespace,
            "name": name,
        }

    def get_pod(self, namespace: str, name: str) -> Obj:
        return self._json("GET", *self._pod(namespace, name))

    def patch_pod(self, namespace: str, name: str, patch: Obj) -> Obj:
        return self._json("PATCH", *self._pod(namespace, name), body=patch, content_type=MERGE)

    def pod_log(self, namespace: str, name: str) -> str:
        resp = self._send("GET", *self._pod(namespace, name, "/log"))
        try:
            return bytes(resp.data).decode("utf-8", "replace")
        except (OSError, TransportError) as exc:
            raise KubeError(0, f"the log stream broke: {exc}") from None

    def follow_pod_log(self, namespace: str, name: str) -> Iterator[bytes]:
        """The pod's log from its start, chunk by chunk as it is written, until its container
        stops; a broken stream raises KubeError."""
        resp = self._send("GET", *self._pod(namespace, name, "/log"), query=[("follow", True)])
        try:
            yield from resp.stream(amt=None, decode_content=False)
        except Exception as exc:
            raise KubeError(0, f"the log stream broke: {exc}") from None
        finally:
            resp.release_conn()

    # --- jobs ------------------------------------------------------------------------------
    def _job(self, namespace: str, name: str) -> tuple[str, dict[str, str]]:
        return "/apis/batch/v1/namespaces/{namespace}/jobs/{name}", {
            "namespace": namespace,
            "name": name,
        }

    def list_jobs(self, *, labels: str, namespace: str | None = None) -> list[Obj]:
        names = None if namespace is None else {"namespace": namespace}
        query = _list_query(labels=labels)
        found = self._json("GET", _collection("jobs", namespace), names, query=query)
        return list(found.get("items") or [])

    def get_job(self, namespace: str, name: str) -> Obj:
        return self._json("GET", *self._job(namespace, name))

    def patch_job(self, namespace: str, name: str, patch: Obj) -> Obj:
        return self._json("PATCH", *self._job(namespace, name), body=patch, content_type=MERGE)

    def create_job(self, namespace: str, body: Obj) -> Obj:
        return self.create("batch/v1", "jobs", namespace, body)

    def delete_job(self, namespace: str, name: str) -> None:
        body = {"propagationPolicy": "Background"}
        self._json("DELETE", *self._job(namespace, name), body=body)

    # --- leases ----------------------------------------------------------------------------
    def _lease(self, namespace: str, name: str) -> tuple[str, dict[str, str]]:
        return "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}", {
            "namespace": namespace,
            "name": name,
        }

    def get_lease(self, namespace: str, name: str) -> Obj:
        return self._json("GET", *self._lease(namespace, name))

    def create_lease(self, namespace: str, body: Obj) -> Obj:
        return self.create("coordination.k8s.io/v1", "leases", namespace, body)

    def replace_lease(self, namespace: str, name: str, body: Obj) -> Obj:
        """PUT with the body's resourceVersion: 409 if another holder wrote first."""
        return self._json("PUT", *self._lease(namespace, name), body=body)

    def delete_lease(self, namespace: str, name: str) -> None:
        self._json("DELETE", *self._lease(namespace, name))

    # --- storage, autoscalers --------------------------------------------------------------
    def get_pvc(self, namespace: str, name: str) -> Obj:
        path = "/api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}"
        return self._json("GET", path, {"namespace": namespace, "name": name})

    def get_pv(self, name: str) -> Obj:
        return self._json("GET", "/api/v1/persistentvolumes/{name}", {"name": name})

    def list_hpas(self, namespace: str) -> list[Obj]:
        path = "/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers"
        return list(self._json("GET", path, {"namespace": namespace}).get("items") or [])

    def list_scaled_objects(self, namespace: str) -> list[Obj]:
        """KEDA ScaledObjects; none when KEDA's CRD is not installed."""
        path = "/apis/keda.sh/v1alpha1/namespaces/{namespace}/scaledobjects"
        try:
            found = self._json("GET", path, {"namespace": namespace})
        except NotFound:
            return []
        return list(found.get("items") or [])

    def patch_scaled_object(self, namespace: str, name: str, patch: Obj) -> Obj:
        path = "/apis/keda.sh/v1alpha1/namespaces/{namespace}/scaledobjects/{name}"
        names = {"namespace": namespace, "name": name}
        return self._json("PATCH", path, names, body=patch, content_type=MERGE)

    def get_node(self, name: str) -> Obj:
        return self._json("GET", "/api/v1/nodes/{name}", {"name": name})

    def create_event(self, namespace: str, body: Obj, *, timeout: float | None = None) -> None:
        """`timeout`: seconds for the whole request (an event must never wait long)."""
        self.create("v1", "events", namespace, body, timeout=timeout)

    # --- reading what runs (lint --cluster, plan --from-cluster) ----------------------------
    def list_all(self, resource: str, namespace: str | None = None) -> list[Obj]:
        """Every object of `resource` (`deployments`, `nodes`...: see _RESOURCES) in all
        namespaces or in `namespace` (ignored for a cluster-scoped one), page by page. Each
        item carries `apiVersion` and `kind`, which a real server leaves out of list items."""
        path = _collection(resource, namespace)
        names = None if namespace is None else {"namespace": namespace}
        items: list[Obj] = []
        token: str | None = None
        while True:
            query = _list_query(token=token, limit=_PAGE)
            page = self._json("GET", path, names, query=query, timeout=_LIST_TIMEOUT)
            kind = str(page.get("kind") or "").removesuffix("List")
            version = page.get("apiVersion")
            items += [{"apiVersion": version, "kind": kind, **i} for i in page.get("items") or []]
            token = (page.get("metadata") or {}).get("continue") or None
            if token is None:
                return items
