"""The resource types the simulated cluster serves: group, version, names, scope, subresources."""

from __future__ import annotations

from dataclasses import dataclass

_ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
_SUB_VERBS = ("get", "patch", "update")


@dataclass(frozen=True, slots=True)
class Resource:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ("status",)
    categories: tuple[str, ...] = ()
    builtin: bool = True  # False: a custom resource (no schema check, no strategic merge)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """How error messages name the type: `pods`, `deployments.apps`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def kind_qualified(self) -> str:
        """How 422 messages name the type: `Pod`, `Deployment.apps`, `Job.batch`."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    def discovery(self) -> list[dict[str, object]]:
        """This type's entries in an APIResourceList, in the real server's key order."""
        main: dict[str, object] = {}
        if self.categories:
            main["categories"] = list(self.categories)
        main.update(kind=self.kind, name=self.plural, namespaced=self.namespaced)
        if self.short_names:
            main["shortNames"] = list(self.short_names)
        main["singularName"] = self.singular
        main["verbs"] = list(_ALL_VERBS)
        entries = [main]
        for sub in self.subresources:
            entry: dict[str, object] = {}
            if sub == "scale":
                entry["group"] = "autoscaling"
            entry.update(kind="Scale" if sub == "scale" else self.kind)
            entry.update(name=f"{self.plural}/{sub}", namespaced=self.namespaced, singularName="")
            entry["verbs"] = ["get"] if sub == "log" else list(_SUB_VERBS)
            if sub == "scale":
                entry["version"] = "v1"
            entries.append(entry)
        return entries


_ALL = ("all",)
RESOURCES: tuple[Resource, ...] = (
    Resource("", "v1", "namespaces", "Namespace", False, ("ns",)),
    Resource("", "v1", "nodes", "Node", False, ("no",)),
    Resource("", "v1", "configmaps", "ConfigMap", True, ("cm",), ()),
    Resource("", "v1", "pods", "Pod", True, ("po",), ("log", "status"), _ALL),
    Resource("", "v1", "events", "Event", True, ("ev",), ()),
    Resource("", "v1", "persistentvolumes", "PersistentVolume", False, ("pv",)),
    Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("pvc",)),
    Resource("apps", "v1", "daemonsets", "DaemonSet", True, ("ds",), ("status",), _ALL),
    Resource(
        "apps", "v1", "deployments", "Deployment", True, ("deploy",), ("scale", "status"), _ALL
    ),
    Resource("apps", "v1", "replicasets", "ReplicaSet", True, ("rs",), ("scale", "status"), _ALL),
    Resource(
        "apps", "v1", "statefulsets", "StatefulSet", True, ("sts",), ("scale", "status"), _ALL
    ),
    Resource("batch", "v1", "jobs", "Job", True, (), ("status",), _ALL),
    Resource("batch", "v1", "cronjobs", "CronJob", True, ("cj",), ("status",), _ALL),
    Resource("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, ("sc",), ()),
    Resource("node.k8s.io", "v1", "runtimeclasses", "RuntimeClass", False, (), ()),
    Resource(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        True,
        ("hpa",),
        ("status",),
        _ALL,
    ),
    Resource("coordination.k8s.io", "v1", "leases", "Lease", True, (), ()),
    # KEDA's custom resource, served as if its CRD were installed (see keda.py).
    Resource(
        "keda.sh",
        "v1alpha1",
        "scaledobjects",
        "ScaledObject",
        True,
        ("so",),
        ("status",),
        ("all", "scaledobject"),
        builtin=False,
    ),
)

BY_PATH: dict[tuple[str, str, str], Resource] = {
    (r.group, r.version, r.plural): r for r in RESOURCES
}
BY_KIND: dict[str, Resource] = {r.kind: r for r in RESOURCES}


def group_versions() -> dict[str, list[str]]:
    """Each named group and its versions, in the order they are served."""
    groups: dict[str, list[str]] = {}
    for r in RESOURCES:
        if r.group and r.version not in groups.setdefault(r.group, []):
            groups[r.group].append(r.version)
    return groups
