"""Kubernetes objects in YAML/JSON documents, with their pod templates and containers.

Every accessor keeps the object's path inside its document, so a rule reports the exact line
and column of the key or value it is about.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from gpuherd.lint.sources.access import as_list
from gpuherd.spec.from_k8s import POD_SPEC_PATHS
from gpuherd.yamlpos import Path, Pos, PositionedDoc


@dataclass(frozen=True)
class K8sObject:
    doc: PositionedDoc
    base: Path  # where the object sits in its document: () or ("items", i) in a List
    data: dict[str, Any]
    # For kinds without a built-in pod path: where one of its pod templates' spec sits, and a
    # short name for it (a custom resource with several templates is one view per template).
    spec_path: tuple[str | int, ...] | None = None
    part: str = ""

    @cached_property
    def kind(self) -> str:
        return str(self.data.get("kind", ""))

    @cached_property
    def metadata(self) -> dict[str, Any]:
        meta = self.data.get("metadata")
        return meta if isinstance(meta, dict) else {}

    @cached_property
    def name(self) -> str:
        return str(self.metadata.get("name", "?"))

    @cached_property
    def namespace(self) -> str | None:
        ns = self.metadata.get("namespace")
        return str(ns) if ns is not None else None

    @cached_property
    def label(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        part = f"[{self.part}]" if self.part else ""
        return f"{self.kind}/{ns}{self.name}{part}"

    def annotations(self) -> dict[str, Any]:
        ann = self.metadata.get("annotations")
        return ann if isinstance(ann, dict) else {}

    def template_annotations(self) -> dict[str, Any]:
        """Annotations of the pod template (where KAI and HAMi read theirs), then the object's."""
        found = self.pod_spec()
        template = at_path(self.data, (*found[0][:-1], "metadata")) if found else None
        ann = template.get("annotations") if isinstance(template, dict) else None
        return {**self.annotations(), **(ann if isinstance(ann, dict) else {})}

    def value_pos(self, *rel: str | int) -> Pos:
        return self.doc.value_pos((*self.base, *rel))

    def key_pos(self, *rel: str | int) -> Pos:
        return self.doc.key_pos((*self.base, *rel))

    def start(self) -> Pos:
        return self.doc.value_pos(self.base)

    @cached_property
    def containers(self) -> list[Container]:
        """Init and regular containers of the pod template, computed once per object."""
        found = self.pod_spec()
        if found is None:
            return []
        path, spec = found
        result = []
        for key, init in (("initContainers", True), ("containers", False)):
            for i, item in enumerate(as_list(spec.get(key))):
                if isinstance(item, dict):
                    result.append(Container(self, (*path, key, i), item, init))
        return result

    @cached_property
    def gpus(self) -> int:
        """GPUs the pod needs at once: its containers' sum, or its largest init container."""
        regular = sum(c.gpus for c in self.containers if not c.init)
        init = max((c.gpus for c in self.containers if c.init), default=0)
        return max(regular, init)

    def pod_spec(self) -> tuple[tuple[str | int, ...], dict[str, Any]] | None:
        return self._pod_spec

    @cached_property
    def _pod_spec(self) -> tuple[tuple[str | int, ...], dict[str, Any]] | None:
        path: tuple[str | int, ...] | None = POD_SPEC_PATHS.get(self.kind, self.spec_path)
        if path is None:
            return None
        node = at_path(self.data, path)
        return (path, node) if isinstance(node, dict) else None


def at_path(data: Any, path: tuple[str | int, ...]) -> Any:
    """data[path[0]][path[1]]..., mappings and lists alike; None where a step is missing."""
    for step in path:
        if isinstance(step, int):
            data = data[step] if isinstance(data, list) and step < len(data) else None
        else:
            data = data.get(step) if isinstance(data, dict) else None
    return data


_GPU_RESOURCE = re.compile(r"^nvidia\.com/(gpu(\.shared)?|mig-[\w.-]+|gpu\.[\w-]+)$")


def is_gpu_resource(name: str) -> bool:
    return name.startswith("nvidia.com/") and bool(_GPU_RESOURCE.match(name))


def parse_count(value: Any) -> int | None:
    """A whole-number quantity (`1`, `"2"`); None when it is not one (`0.5`, `500m`, `one`)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


@dataclass(frozen=True)
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

    @cached_property
    def gpus(self) -> int:
        """GPUs (or shares) it asks for: its limits, where Kubernetes reads them."""
        return sum(
            parse_count(value) or 0
            for name, value in self.resources("limits").items()
            if is_gpu_resource(str(name))
        )

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
                yield from _views(doc, ("items", i), item)
        return
    if "apiVersion" in data:
        yield from _views(doc, (), data)


def _views(doc: PositionedDoc, base: Path, data: dict[str, Any]) -> Iterator[K8sObject]:
    """The object itself, or for other kinds one view per pod template found inside it."""
    if str(data.get("kind", "")) in POD_SPEC_PATHS:
        yield K8sObject(doc, base, data)
        return
    templates = list(pod_templates(data))
    if not templates:
        yield K8sObject(doc, base, data)
    for path, part in templates:
        yield K8sObject(doc, base, data, path, part)


_NOT_WORKLOAD = frozenset({"metadata", "status"})
_MAX_DEPTH = 12


def pod_templates(data: dict[str, Any]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """(path of the PodSpec, short name) of every PodTemplateSpec-shaped map: a mapping whose
    `spec` has a `containers` list (Deployment-like `template`, Ray `headGroupSpec` and
    `workerGroupSpecs[]`, JobSet `replicatedJobs[]`, Kubeflow `*ReplicaSpecs`, LeaderWorkerSet
    `leaderWorkerTemplate`, ...). CRDs spell the holder differently; the shape is the same."""
    stack: list[tuple[tuple[str | int, ...], Any, str]] = [((), data, "")]
    while stack:
        path, node, name = stack.pop()
        if len(path) > _MAX_DEPTH:
            continue
        if isinstance(node, dict):
            spec = node.get("spec")
            if isinstance(spec, dict) and isinstance(spec.get("containers"), list):
                yield (*path, "spec"), name
                continue
            own = node.get("name", node.get("groupName")) if path else None
            for key, value in reversed(list(node.items())):
                if path or key not in _NOT_WORKLOAD:
                    label = str(own) if isinstance(own, str) else _part_name(key, name)
                    stack.append(((*path, str(key)), value, label))
        elif isinstance(node, list):
            for i in range(len(node) - 1, -1, -1):
                stack.append(((*path, i), node[i], f"{name}[{i}]"))


def _part_name(key: str, outer: str) -> str:
    if key in ("spec", "template"):
        return outer
    return key.replace(" ", "_")


def containers(obj: K8sObject) -> list[Container]:
    return obj.containers
