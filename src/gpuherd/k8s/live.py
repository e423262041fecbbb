"""What a cluster runs, read with the broker's client, as the manifests that would have made it.

`gpuherd lint --cluster` and `gpuherd plan --from-cluster` read live objects instead of files.
The server adds what no manifest says (`status`, `managedFields`, `uid`, `resourceVersion`,
timestamps, kubectl's last-applied copy); those are stripped so rules and the planner judge what
was declared. The server's defaults (a Deployment's RollingUpdate strategy, a CronJob's
`concurrencyPolicy: Allow`) stay: they are what runs. A Node keeps `status.capacity` and
`status.allocatable`, the GPU facts rules compare pods with.

An object another object we read controls (a Deployment's ReplicaSet and pods, a CronJob's
Jobs) is left out: its template is already judged at the top. A pod whose controller we do not
read (a custom resource's) is kept, as it is the only view of that workload.

Namespaces: all of them by default, one list per kind; where the credentials may not list a kind
in every namespace (403), the namespaces are listed and read one by one, and each one still
forbidden is reported as skipped, as is a kind this API server does not serve (404).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gpuherd.k8s.client import KubeClient, KubeError, NotFound
from gpuherd.spec.from_k8s import POD_SPEC_PATHS, VRAM_ANNOTATION

Obj = dict[str, Any]

# The workload kinds read, by resource; ReplicaSets only count when nothing we read controls them.
WORKLOADS: dict[str, str] = {
    "deployments": "Deployment",
    "statefulsets": "StatefulSet",
    "daemonsets": "DaemonSet",
    "replicasets": "ReplicaSet",
    "jobs": "Job",
    "cronjobs": "CronJob",
    "pods": "Pod",
}
# What cluster-level rules read beside the workloads.
FACTS: dict[str, str] = {
    "nodes": "Node",
    "runtimeclasses": "RuntimeClass",
    "persistentvolumes": "PersistentVolume",
    "persistentvolumeclaims": "PersistentVolumeClaim",
    "storageclasses": "StorageClass",
    "configmaps": "ConfigMap",  # a device-plugin sharing config lives in one
}
CLUSTER_SCOPED = frozenset({"nodes", "runtimeclasses", "persistentvolumes", "storageclasses"})

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_SERVER_METADATA = (
    "managedFields",
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
_NODE_STATUS = ("capacity", "allocatable")


class ClusterUnreadable(Exception):
    """The API server did not answer, refused the credentials, or let nothing be listed."""


@dataclass(frozen=True, slots=True)
class Skipped:
    resource: str
    namespace: str | None  # None: the resource in every namespace, or cluster-scoped
    reason: str  # "forbidden" or "not served"


def describe(skipped: list[Skipped]) -> str:
    """`namespace secret: deployments, pods; cluster-wide: nodes`, one group per namespace."""
    groups: dict[str | None, list[str]] = {}
    for s in skipped:
        groups.setdefault(s.namespace, []).append(s.resource)
    return "; ".join(
        f"{f'namespace {ns}' if ns else 'cluster-wide'}: {', '.join(resources)}"
        for ns, resources in groups.items()
    )


@dataclass
class Snapshot:
    server: str
    objects: list[Obj] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    namespaces: list[str] | None = None  # the namespaces read one by one; None: all at once
    read: dict[str, int] = field(default_factory=dict)  # resource -> objects listed

    def of_kind(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o.get("kind") == kind]


def controller_uid(obj: Obj) -> str | None:
    """The uid of the object that controls this one (ownerReferences with controller: true)."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller") and ref.get("uid"):
            return str(ref["uid"])
    return None


def _strip_metadata(value: Any) -> None:
    """Server-populated metadata out of every `metadata` mapping (templates have one too)."""
    if isinstance(value, dict):
        meta = value.get("metadata")
        if isinstance(meta, dict):
            for key in _SERVER_METADATA:
                meta.pop(key, None)
            annotations = meta.get("annotations")
            if isinstance(annotations, dict):
                annotations.pop(LAST_APPLIED, None)
                if not annotations:
                    del meta["annotations"]
        for key, child in value.items():
            if key != "status":
                _strip_metadata(child)
    elif isinstance(value, list):
        for child in value:
            _strip_metadata(child)


def clean(obj: Obj) -> Obj:
    """The object as its manifest would say it: no status (a Node keeps its capacity and
    allocatable), no server metadata. A copy; `obj` is left as it was."""
    import copy

    out = copy.deepcopy(obj)
    status = out.pop("status", None)
    if out.get("kind") == "Node" and isinstance(status, dict):
        kept = {k: status[k] for k in _NODE_STATUS if k in status}
        if kept:
            out["status"] = kept
    _strip_metadata(out)
    return out


def _top_level(found: list[Obj]) -> list[Obj]:
    """Workloads nothing else we read controls (see the module doc)."""
    uids = {str(o["metadata"]["uid"]) for o in found if (o.get("metadata") or {}).get("uid")}
    return [o for o in found if controller_uid(o) not in uids]


class _Reader:
    def __init__(self, client: KubeClient, namespace: str | None) -> None:
        self.client = client
        self.namespace = namespace
        self.snapshot = Snapshot(server=client.server)
        self._namespaces: list[str] | None = None

    def _list(self, resource: str, namespace: str | None) -> list[Obj] | None:
        """The objects, or None when forbidden (403) or not served (404): noted as skipped."""
        try:
            return self.client.list_all(resource, namespace)
        except NotFound:
            self.snapshot.skipped.append(Skipped(resource, None, "not served"))
        except KubeError as exc:
            if exc.status != 403:
                raise ClusterUnreadable(_why(self.client, exc)) from None
            self.snapshot.skipped.append(Skipped(resource, namespace, "forbidden"))
        return None

    def namespaces(self) -> list[str]:
        """Namespaces to read one by one: all there are, or the context's own when even
        that list is forbidden."""
        if self._namespaces is None:
            found = self._list("namespaces", None)
            self._namespaces = (
                sorted(str(n["metadata"]["name"]) for n in found)
                if found is not None
                else [self.client.namespace]
            )
            self.snapshot.namespaces = self._namespaces
        return self._namespaces

    def resource(self, resource: str) -> list[Obj] | None:
        if resource in CLUSTER_SCOPED or self.namespace is not None:
            return self._list(resource, None if resource in CLUSTER_SCOPED else self.namespace)
        everywhere = self._list(resource, None)
        if everywhere is not None:
            return everywhere
        if self.snapshot.skipped[-1].reason != "forbidden":
            return None
        self.snapshot.skipped.pop()  # forbidden everywhere: try namespace by namespace
        found: list[Obj] = []
        readable = False
        for ns in self.namespaces():
            items = self._list(resource, ns)
            if items is not None:
                readable = True
                found += items
        return found if readable else None


def _why(client: KubeClient, exc: KubeError) -> str:
    if exc.status == 0:
        return exc.message
    if exc.status == 401:
        return f"the API server {client.server} refused the credentials (401): {exc.message}"
    return f"the API server {client.server} answered {exc.status}: {exc.message}"


def read_cluster(
    client: KubeClient, *, namespace: str | None = None, facts: Iterable[str] = tuple(FACTS)
) -> Snapshot:
    """The workloads and the cluster facts named in `facts` (resources of FACTS), as clean
    objects. Raises ClusterUnreadable when the server cannot be read at all, or no workload
    kind can be listed anywhere."""
    reader = _Reader(client, namespace)
    workloads: list[Obj] = []
    listed_any = False
    for resource in [*WORKLOADS, *facts]:
        items = reader.resource(resource)
        if items is None:
            continue
        reader.snapshot.read[resource] = len(items)
        if resource in WORKLOADS:
            listed_any = True
            workloads += items
        else:
            reader.snapshot.objects += [clean(o) for o in items]
    if not listed_any:
        raise ClusterUnreadable(
            f"the credentials may not list any workloads on {client.server} "
            f"({describe(reader.snapshot.skipped)})"
        )
    reader.snapshot.objects[:0] = [clean(o) for o in _top_level(workloads)]
    return reader.snapshot


# --- what the planner reads (plan --from-cluster) -----------------------------------------

_VRAM_ANNOTATIONS = (VRAM_ANNOTATION, "gpu-memory", "gpu-fraction")  # gpuherd's own, KAI's


def asks_for_gpu(obj: Obj) -> bool:
    """Whether a workload's pods ask for a GPU: an `nvidia.com/` resource in a container's
    limits or requests (whole GPUs, shares, MIG, HAMi memory), or a VRAM annotation (gpuherd's,
    KAI's) on it or its pod template."""
    path = POD_SPEC_PATHS.get(str(obj.get("kind")))
    if path is None:
        return False
    spec = _dig(obj, path)
    template_meta = _dig(obj, (*path[:-1], "metadata"))
    for meta in (obj.get("metadata"), template_meta):
        annotations = meta.get("annotations") if isinstance(meta, dict) else None
        if isinstance(annotations, dict) and any(a in annotations for a in _VRAM_ANNOTATIONS):
            return True
    for key in ("containers", "initContainers"):
        for container in (spec or {}).get(key) or []:
            resources = container.get("resources") if isinstance(container, dict) else None
            for section in ("limits", "requests"):
                values = (resources or {}).get(section)
                if isinstance(values, dict) and any(
                    str(name).startswith("nvidia.com/") for name in values
                ):
                    return True
    return False


def _dig(data: Any, path: tuple[str, ...]) -> Any:
    for step in path:
        data = data.get(step) if isinstance(data, dict) else None
    return data if isinstance(data, dict) else None


def planner_docs(snapshot: Snapshot) -> list[Obj]:
    """What `plan --from-k8s` would read from files: the Nodes, and the workloads that ask for
    a GPU (a CPU-only pod whose image merely mentions vLLM, say a router, is not a tenant)."""
    return [o for o in snapshot.objects if o.get("kind") == "Node" or asks_for_gpu(o)]
