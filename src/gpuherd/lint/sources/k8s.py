"""Kubernetes objects in YAML/JSON documents, with their pod templates and containers.

Every accessor keeps the object's path inside its document, so a rule reports the exact line
and column of the key or value it is about.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gpuherd.lint.sources.access import as_list
from gpuherd.yamlpos import Path, Pos, PositionedDoc

POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}


@dataclass(frozen=True, slots=True)
class K8sObject:
    doc: PositionedDoc
    base: Path  # where the object sits in its document: () or ("items", i) in a List
    data: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.data.get("kind", ""))

    @property
    def metadata(self) -> dict[str, Any]:
        meta = self.data.get("metadata")
        return meta if isinstance(meta, dict) else {}

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", "?"))

    @property
    def namespace(self) -> str | None:
        ns = self.metadata.get("namespace")
        return str(ns) if ns is not None else None

    @property
    def label(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind}/{ns}{self.name}"

    def annotations(self) -> dict[str, Any]:
        ann = self.metadata.get("annotations")
        return ann if isinstance(ann, dict) else {}

    def value_pos(self, *rel: str | int) -> Pos:
        return self.doc.value_pos((*self.base, *rel))

    def key_pos(self, *rel: str | int) -> Pos:
        return self.doc.key_pos((*self.base, *rel))

    def start(self) -> Pos:
        return self.doc.value_pos(self.base)

    def pod_spec(self) -> tuple[tuple[str, ...], dict[str, Any]] | None:
        path = POD_SPEC_PATHS.get(self.kind)
        if path is None:
            return None
        node: Any = self.data
        for step in path:
            node = node.get(step) if isinstance(node, dict) else None
        return (path, node) if isinstance(node, dict) else None


@dataclass(frozen=True, slots=True)
class Container:
    obj: K8sObject
    rel: tuple[str | int, ...]  # path from the object to this container
    data: dict[str, Any]
    init: bool

    @property
    def name(self) -> str:
        return str(self.data.get("name", "?"))

    @property
    def label(self) -> str:
        role = "initContainer" if self.init else "container"
        return f"{self.obj.label} {role}={self.name}"

    def value_pos(self, *rel: str | int) -> Pos:
        return self.obj.value_pos(*self.rel, *rel)

    def key_pos(self, *rel: str | int) -> Pos:
        return self.obj.key_pos(*self.rel, *rel)

    def resources(self, section: str) -> dict[str, Any]:
        res = self.data.get("resources")
        part = res.get(section) if isinstance(res, dict) else None
        return part if isinstance(part, dict) else {}

    def env(self) -> dict[str, tuple[Any, int]]:
        """name -> (literal value, index in the env list); valueFrom entries are skipped."""
        found: dict[str, tuple[Any, int]] = {}
        env = self.data.get("env")
        for i, item in enumerate(env if isinstance(env, list) else []):
            if isinstance(item, dict) and "name" in item and "value" in item:
                found[str(item["name"])] = (item["value"], i)
        return found

    def command_text(self) -> str:
        """Image, command and args joined: the evidence heuristic rules look at."""
        parts = [str(self.data.get("image", ""))]
        for key in ("command", "args"):
            value = self.data.get(key)
            if isinstance(value, list):
                parts += [str(v) for v in value]
        return " ".join(parts)


def k8s_objects(doc: PositionedDoc) -> Iterator[K8sObject]:
    """Objects with apiVersion and kind; the items of a `kind: List` are yielded one by one."""
    data = doc.data
    if not isinstance(data, dict) or "kind" not in data:
        return
    if data.get("kind") == "List" or (
        str(data.get("kind", "")).endswith("List") and isinstance(data.get("items"), list)
    ):
        for i, item in enumerate(as_list(data.get("items"))):
            if isinstance(item, dict) and "kind" in item:
                yield K8sObject(doc, ("items", i), item)
        return
    if "apiVersion" in data:
        yield K8sObject(doc, (), data)


def containers(obj: K8sObject) -> list[Container]:
    found = obj.pod_spec()
    if found is None:
        return []
    path, spec = found
    result = []
    for key, init in (("initContainers", True), ("containers", False)):
        items = spec.get(key)
        for i, item in enumerate(items if isinstance(items, list) else []):
            if isinstance(item, dict):
                result.append(Container(obj, (*path, key, i), item, init))
    return result
