"""NVIDIA device-plugin configs: standalone files and those embedded in ConfigMap data.

An embedded config is YAML inside a YAML string; its positions are mapped back to the outer
file (block scalars: the content's own lines and indentation), so findings point at the real
line of `replicas:` inside the ConfigMap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from gpuherd.lint.sources.access import as_list
from gpuherd.lint.sources.k8s import K8sObject
from gpuherd.yamlpos import Path, Pos, PositionedDoc, YamlError, load_document


@dataclass(frozen=True)
class PluginConfig:
    label: str  # "ConfigMap/kube-system/nvidia-device-plugin-config data[config.yaml]" or file
    file: str
    data: dict[str, Any]
    value_pos: Callable[[Path], Pos]
    key_pos: Callable[[Path], Pos]
    group: str | None = None  # the ConfigMap it belongs to (several keys: one config per node)
    key: str | None = None  # its data key, which nodes select with nvidia.com/device-plugin.config

    def sharing(self) -> tuple[str | None, dict[str, Any]]:
        """(strategy name, its settings); (None, {}) when the config shares nothing."""
        sharing = self.data.get("sharing")
        if not isinstance(sharing, dict):
            return None, {}
        for strategy in ("timeSlicing", "mps"):
            if isinstance(sharing.get(strategy), dict):
                return strategy, sharing[strategy]
        return None, {}

    def shared_names(self) -> dict[str, str]:
        """Original resource name -> name it is advertised under."""
        strategy, settings = self.sharing()
        if strategy is None:
            return {}
        rename_default = settings.get("renameByDefault") is True
        names: dict[str, str] = {}
        for res in as_list(settings.get("resources")):
            if isinstance(res, dict) and isinstance(res.get("name"), str):
                name = res["name"]
                advertised = res.get("rename") or (f"{name}.shared" if rename_default else name)
                names[name] = str(advertised)
        return names


def is_plugin_config(data: Any) -> bool:
    return (
        isinstance(data, dict)
        and "kind" not in data
        and "version" in data
        and ("sharing" in data or "flags" in data)
    )


def standalone(doc: PositionedDoc) -> PluginConfig | None:
    if not is_plugin_config(doc.data):
        return None
    return PluginConfig(doc.source, doc.source, doc.data, doc.value_pos, doc.key_pos)


def _embedded_mapper(
    outer: Pos, lines: list[str], inner: Callable[[Path], Pos]
) -> Callable[[Path], Pos]:
    indicator = lines[outer.line - 1][outer.column - 1 :] if outer.line <= len(lines) else ""
    if indicator.startswith(("|", ">")):
        content = next((ln for ln in lines[outer.line :] if ln.strip()), "")
        indent = len(content) - len(content.lstrip(" "))

        def block(path: Path) -> Pos:
            pos = inner(path)
            return Pos(outer.line + pos.line, indent + pos.column)

        return block

    def flow(path: Path) -> Pos:  # a quoted one-line string: approximate within its line
        pos = inner(path)
        return Pos(outer.line + pos.line - 1, outer.column + pos.column)

    return flow


def embedded(obj: K8sObject, lines: list[str]) -> Iterator[PluginConfig]:
    if obj.kind != "ConfigMap":
        return
    data = obj.data.get("data")
    for key, value in data.items() if isinstance(data, dict) else []:
        if not isinstance(value, str) or "version" not in value:
            continue
        try:
            doc = load_document(value, source=obj.doc.source)
        except YamlError:
            continue
        if not is_plugin_config(doc.data):
            continue
        outer = obj.value_pos("data", key)
        yield PluginConfig(
            f"{obj.label} data[{key}]",
            obj.doc.source,
            doc.data,
            _embedded_mapper(outer, lines, doc.value_pos),
            _embedded_mapper(outer, lines, doc.key_pos),
            group=obj.label,
            key=str(key),
        )
