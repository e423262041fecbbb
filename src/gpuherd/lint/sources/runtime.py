"""Container-runtime config files: nvidia-container-runtime and containerd TOML, daemon.json."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from gpuherd.lint.sources.toml_pos import toml_pos
from gpuherd.runtimecfg.containerd import parse_containerd
from gpuherd.yamlpos import Path, Pos, PositionedDoc

RuntimeKind = Literal["toolkit", "containerd", "docker"]


@dataclass(frozen=True)
class RuntimeFile:
    kind: RuntimeKind
    file: str
    data: dict[str, Any]
    pos: Callable[[Path], Pos]


class TomlError(Exception):
    def __init__(self, pos: Pos, message: str) -> None:
        super().__init__(message)
        self.pos = pos
        self.message = message


def from_toml(source: str, text: str) -> RuntimeFile | None:
    """A runtime TOML config, None for other TOML; raises TomlError when it does not parse."""
    try:
        data = parse_containerd(text) if source.endswith(".tmpl") else tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+), column (\d+)", str(exc))
        if match:
            pos = Pos(int(match.group(1)), int(match.group(2)))
        else:  # "at end of document"
            lines = text.split("\n")
            pos = Pos(len(lines), len(lines[-1]) + 1)
        raise TomlError(pos, str(exc).split(" (at")[0]) from None
    kind: RuntimeKind | None = None
    if "nvidia-container-runtime" in data or "nvidia-container-cli" in data:
        kind = "toolkit"
    elif isinstance(data.get("plugins"), dict):
        kind = "containerd"
    if kind is None:
        return None
    return RuntimeFile(kind, source, data, lambda path: toml_pos(text, path))


def from_json_doc(doc: PositionedDoc) -> RuntimeFile | None:
    data = doc.data
    if not isinstance(data, dict) or "kind" in data or "apiVersion" in data:
        return None
    named = doc.source.rsplit("/", 1)[-1] == "daemon.json"
    if (
        named
        or "default-runtime" in data
        or (isinstance(data.get("runtimes"), dict) and "services" not in data)
    ):
        return RuntimeFile("docker", doc.source, data, doc.key_pos)
    return None
