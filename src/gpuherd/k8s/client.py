"""The one module that talks to the Kubernetes API, through the official client.

Everything above it sees plain JSON objects (`dict`s with the API's own camelCase keys, as
`kubectl get -o json` prints them) and a handful of errors: `NotFound`, `Conflict` (409: a stale
resourceVersion, an object that exists), `Gone` (410: a watch's version fell out of the
server's history) and `KubeError` for the rest. No other gpuherd module imports `kubernetes`
(an import-linter contract), so a change of client version touches this file only.

Every call is counted in `requests` (a watch counts once when opened): the benchmark's "API
requests per minute while idle" reads it.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterator
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
# resource -> (API attribute, list in all namespaces / cluster-scoped, list in one namespace)
_LISTS: dict[str, tuple[str, str, str | None]] = {
    "namespaces": ("core", "list_namespace", None),
    "nodes": ("core", "list_node", None),
    "pods": ("core", "list_pod_for_all_namespaces", "list_namespaced_pod"),
    "configmaps": ("core", "list_config_map_for_all_namespaces", "list_namespaced_config_map"),
    "persistentvolumes": ("core", "list_persistent_volume", None),
    "persistentvolumeclaims": (
        "core",
        "list_persistent_volume_claim_for_all_namespaces",
        "list_namespaced_persistent_volume_claim",
    ),
    "deployments": ("apps", "list_deployment_for_all_namespaces", "list_namespaced_deployment"),
    "statefulsets": (
        "apps",
        "list_stateful_set_for_all_namespaces",
        "list_namespaced_stateful_set",
    ),
    "daemonsets": ("apps", "list_daemon_set_for_all_namespaces", "list_namespaced_daemon_set"),
    "replicasets": ("apps", "list_replica_set_for_all_namespaces", "list_namespaced_replica_set"),
    "jobs": ("batch", "list_job_for_all_namespaces", "list_namespaced_job"),
    "cronjobs": ("batch", "list_cron_job_for_all_namespaces", "list_namespaced_cron_job"),
    "storageclasses": ("storage", "list_storage_class", None),
    "runtimeclasses": ("node_api", "list_runtime_class", None),
}


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


def _selectors(node: str | None, labels: str | None) -> dict[str, str]:
    kwargs = {}
    if node is not None:
        kwargs["field_selector"] = f"spec.nodeName={node}"
    if labels is not None:
        kwargs["label_selector"] = labels
    return kwargs


class KubeClient:
    """Typed wrappers over the official client's generated APIs, answering raw JSON."""

    def __init__(self, api_client: Any) -> None:
        self.api_client = api_client
        self.core = k8s.CoreV1Api(api_client)
        self.apps = k8s.AppsV1Api(api_client)
        self.batch = k8s.BatchV1Api(api_client)
        self.coordination = k8s.CoordinationV1Api(api_client)
        self.autoscaling = k8s.AutoscalingV2Api(api_client)
        self.custom = k8s.CustomObjectsApi(api_client)
        self.storage = k8s.StorageV1Api(api_client)
        self.node_api = k8s.NodeV1Api(api_client)
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
    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Obj:
        with self.lock:
            self.requests += 1
        try:
            resp = fn(*args, _preload_content=False, **kwargs)
        except ApiException as exc:
            raise _error(exc) from None
        except OSError as exc:  # reset midway
            raise KubeError(0, f"the API server did not answer: {exc}") from None
        except TransportError as exc:  # refused, unresolvable, TLS: urllib3 gave up retrying
            reason = getattr(exc, "reason", None) or exc
            raise KubeError(0, f"the API server {self.server} did not answer: {reason}") from None
        data = resp.data
        return dict(json.loads(data)) if data else {}

    # --- workloads -------------------------------------------------------------------------
    def _apps(self, ref: Ref, verb: str) -> Callable[..., Any]:
        kinds = {"Deployment": "deployment", "StatefulSet": "stateful_set"}
        if ref.kind not in kinds:
            raise KubeError(400, f"{ref.kind} is not a scalable workload gpuherd knows")
        return getattr(self.apps, f"{verb}_namespaced_{kinds[ref.kind]}")  # type: ignore[no-any-return]

    def get_workload(self, ref: Ref) -> Obj:
        return self._call(self._apps(ref, "read"), ref.name, ref.namespace)

    def patch_workload(self, ref: Ref, patch: Obj) -> Obj:
        """A JSON merge patch (a None value removes the key)."""
        fn = self._apps(ref, "patch")
        return self._call(fn, ref.name, ref.namespace, patch, _content_type=MERGE)

    def list_workloads(self, kind: str, namespace: str | None = None) -> list[Obj]:
        verb = {"Deployment": "deployment", "StatefulSet": "stateful_set"}[kind]
        if namespace is None:
            fn = getattr(self.apps, f"list_{verb}_for_all_namespaces")
            return list(self._call(fn).get("items") or [])
        fn = getattr(self.apps, f"list_namespaced_{verb}")
        return list(self._call(fn, namespace).get("items") or [])

    def read_scale(self, ref: Ref) -> tuple[int, str]:
        """Its `spec.replicas` through the scale subresource, with the resourceVersion."""
        verb = "deployment" if ref.kind == "Deployment" else "stateful_set"
        fn = getattr(self.apps, f"read_namespaced_{verb}_scale")
        scale = self._call(fn, ref.name, ref.namespace)
        return int((scale.get("spec") or {}).get("replicas") or 0), str(
            scale["metadata"]["resourceVersion"]
        )

    def write_scale(self, ref: Ref, replicas: int, resource_version: str) -> None:
        """PUT the scale with a resourceVersion precondition: 409 if anyone wrote since."""
        verb = "deployment" if ref.kind == "Deployment" else "stateful_set"
        fn = getattr(self.apps, f"replace_namespaced_{verb}_scale")
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
        self._call(fn, ref.name, ref.namespace, body)

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
        kwargs = _selectors(node, labels)
        if namespace is None:
            return self._call(self.core.list_pod_for_all_namespaces, **kwargs)
        return self._call(self.core.list_namespaced_pod, namespace, **kwargs)

    def list_objects(
        self, resource: str, *, node: str | None = None, labels: str | None = None
    ) -> Obj:
        """All namespaces' pods, jobs, deployments or statefulsets (a list with its
        `metadata.resourceVersion`)."""
        kwargs = _selectors(node, labels)
        return self._call(self._all_namespaces(resource), **kwargs)

    def _all_namespaces(self, resource: str) -> Callable[..., Any]:
        if resource == "pods":
            return self.core.list_pod_for_all_namespaces
        if resource == "jobs":
            return self.batch.list_job_for_all_namespaces
        if resource == "deployments":
            return self.apps.list_deployment_for_all_namespaces
        if resource == "statefulsets":
            return self.apps.list_stateful_set_for_all_namespaces
        raise ValueError(f"no watch for {resource}")

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
        with self.lock:
            self.requests += 1
        try:
            resp: Any = self._all_namespaces(resource)(
                **_selectors(node, labels),
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                watch=True,
                timeout_seconds=timeout,
                _preload_content=False,
            )
        except ApiException as exc:
            raise _error(exc) from None
        except OSError as exc:
            raise KubeError(0, f"the API server did not answer: {exc}") from None
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
        except OSError as exc:  # the stream broke: the caller resumes from its version
            raise KubeError(0, f"the watch stream broke: {exc}") from None
        finally:
            resp.close()
            resp.release_conn()

    def watch_pods(self, node: str, resource_version: str, *, timeout: int) -> Iterator[Obj]:
        return self.watch("pods", resource_version, node=node, timeout=timeout)

    def get_pod(self, namespace: str, name: str) -> Obj:
        return self._call(self.core.read_namespaced_pod, name, namespace)

    def patch_pod(self, namespace: str, name: str, patch: Obj) -> Obj:
        return self._call(
            self.core.patch_namespaced_pod, name, namespace, patch, _content_type=MERGE
        )

    def pod_log(self, namespace: str, name: str) -> str:
        with self.lock:
            self.requests += 1
        try:
            log: Any = self.core.read_namespaced_pod_log(name, namespace, _preload_content=False)
        except ApiException as exc:
            raise _error(exc) from None
        return bytes(log.data).decode("utf-8", "replace")

    def follow_pod_log(self, namespace: str, name: str) -> Iterator[bytes]:
        """The pod's log from its start, chunk by chunk as it is written, until its container
        stops; a broken stream raises KubeError."""
        with self.lock:
            self.requests += 1
        try:
            resp: Any = self.core.read_namespaced_pod_log(
                name, namespace, follow=True, _preload_content=False
            )
        except ApiException as exc:
            raise _error(exc) from None
        except Exception as exc:  # refused, reset: urllib3's errors
            raise KubeError(0, f"the API server did not answer: {exc}") from None
        try:
            yield from resp.stream(amt=None, decode_content=False)
        except Exception as exc:
            raise KubeError(0, f"the log stream broke: {exc}") from None
        finally:
            resp.release_conn()

    # --- jobs ------------------------------------------------------------------------------
    def list_jobs(self, *, labels: str, namespace: str | None = None) -> list[Obj]:
        if namespace is None:
            found = self._call(self.batch.list_job_for_all_namespaces, label_selector=labels)
        else:
            found = self._call(self.batch.list_namespaced_job, namespace, label_selector=labels)
        return list(found.get("items") or [])

    def get_job(self, namespace: str, name: str) -> Obj:
        return self._call(self.batch.read_namespaced_job, name, namespace)

    def patch_job(self, namespace: str, name: str, patch: Obj) -> Obj:
        return self._call(
            self.batch.patch_namespaced_job, name, namespace, patch, _content_type=MERGE
        )

    def create_job(self, namespace: str, body: Obj) -> Obj:
        return self._call(self.batch.create_namespaced_job, namespace, body)

    def delete_job(self, namespace: str, name: str) -> None:
        body = {"propagationPolicy": "Background"}
        self._call(self.batch.delete_namespaced_job, name, namespace, body=body)

    # --- leases ----------------------------------------------------------------------------
    def get_lease(self, namespace: str, name: str) -> Obj:
        return self._call(self.coordination.read_namespaced_lease, name, namespace)

    def create_lease(self, namespace: str, body: Obj) -> Obj:
        return self._call(self.coordination.create_namespaced_lease, namespace, body)

    def replace_lease(self, namespace: str, name: str, body: Obj) -> Obj:
        """PUT with the body's resourceVersion: 409 if another holder wrote first."""
        return self._call(self.coordination.replace_namespaced_lease, name, namespace, body)

    def delete_lease(self, namespace: str, name: str) -> None:
        self._call(self.coordination.delete_namespaced_lease, name, namespace)

    # --- storage, autoscalers --------------------------------------------------------------
    def get_pvc(self, namespace: str, name: str) -> Obj:
        return self._call(self.core.read_namespaced_persistent_volume_claim, name, namespace)

    def get_pv(self, name: str) -> Obj:
        return self._call(self.core.read_persistent_volume, name)

    def list_hpas(self, namespace: str) -> list[Obj]:
        fn = self.autoscaling.list_namespaced_horizontal_pod_autoscaler
        return list(self._call(fn, namespace).get("items") or [])

    def list_scaled_objects(self, namespace: str) -> list[Obj]:
        """KEDA ScaledObjects; none when KEDA's CRD is not installed."""
        try:
            found = self._call(
                self.custom.list_namespaced_custom_object,
                "keda.sh",
                "v1alpha1",
                namespace,
                "scaledobjects",
            )
        except NotFound:
            return []
        return list(found.get("items") or [])

    def patch_scaled_object(self, namespace: str, name: str, patch: Obj) -> Obj:
        return self._call(
            self.custom.patch_namespaced_custom_object,
            "keda.sh",
            "v1alpha1",
            namespace,
            "scaledobjects",
            name,
            patch,
            _content_type=MERGE,
        )

    def get_node(self, name: str) -> Obj:
        return self._call(self.core.read_node, name)

    def create_event(self, namespace: str, body: Obj, *, timeout: float | None = None) -> None:
        """`timeout`: seconds for the whole request (an event must never wait long)."""
        extra = {} if timeout is None else {"_request_timeout": timeout}
        self._call(self.core.create_namespaced_event, namespace, body, **extra)

    # --- reading what runs (lint --cluster, plan --from-cluster) ----------------------------
    def list_all(self, resource: str, namespace: str | None = None) -> list[Obj]:
        """Every object of `resource` (`deployments`, `nodes`...: see _LISTS) in all namespaces
        or in `namespace`, page by page. Each item carries `apiVersion` and `kind`, which a
        real server leaves out of list items."""
        api_name, every, one = _LISTS[resource]
        api = getattr(self, api_name)
        fn = getattr(api, every if namespace is None or one is None else one)
        args = () if namespace is None or one is None else (namespace,)
        items: list[Obj] = []
        token: str | None = None
        while True:
            more = {"_continue": token} if token else {}
            page = self._call(fn, *args, limit=_PAGE, _request_timeout=_LIST_TIMEOUT, **more)
            kind = str(page.get("kind") or "").removesuffix("List")
            version = page.get("apiVersion")
            items += [{"apiVersion": version, "kind": kind, **i} for i in page.get("items") or []]
            token = (page.get("metadata") or {}).get("continue") or None
            if token is None:
                return items
