"""Docker Compose services, from full files (`services:`) or fragments that define one service."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from gpuherd.yamlpos import Path, Pos, PositionedDoc

_SERVICE_KEYS = {"image", "build", "deploy", "runtime", "extends", "command", "environment"}


@dataclass(frozen=True, slots=True)
class Service:
    doc: PositionedDoc
    base: Path
    name: str
    data: dict[str, Any]

    @property
    def label(self) -> str:
        return f"service={self.name}"

    def value_pos(self, *rel: str | int) -> Pos:
        return self.doc.value_pos((*self.base, *rel))

    def key_pos(self, *rel: str | int) -> Pos:
        return self.doc.key_pos((*self.base, *rel))


def compose_services(doc: PositionedDoc) -> Iterator[Service]:
    data = doc.data
    if not isinstance(data, dict) or "kind" in data or "apiVersion" in data:
        return
    services = data.get("services")
    if isinstance(services, dict):
        for name, spec in services.items():
            if isinstance(spec, dict):
                yield Service(doc, ("services", name), str(name), spec)
        return
    # A fragment used through `extends`: the file is one service's definition.
    if ("deploy" in data or "runtime" in data) and set(data) <= _SERVICE_KEYS | {
        "container_name",
        "volumes",
        "ports",
        "devices",
        "env_file",
        "restart",
        "labels",
        "networks",
        "healthcheck",
        "depends_on",
        "working_dir",
        "user",
        "entrypoint",
    }:
        yield Service(doc, (), PurePath(doc.source).stem, data)
