"""AWS ECS task definitions (register input or describe output JSON) and ECS agent settings."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gpuherd.lint.sources.access import as_list
from gpuherd.yamlpos import Path, Pos, PositionedDoc


@dataclass(frozen=True, slots=True)
class TaskDef:
    doc: PositionedDoc
    base: Path
    data: dict[str, Any]

    @property
    def label(self) -> str:
        return f"TaskDefinition/{self.data.get('family', '?')}"

    def value_pos(self, *rel: str | int) -> Pos:
        return self.doc.value_pos((*self.base, *rel))

    def key_pos(self, *rel: str | int) -> Pos:
        return self.doc.key_pos((*self.base, *rel))

    def containers(self) -> Iterator[tuple[int, dict[str, Any]]]:
        defs = self.data.get("containerDefinitions")
        for i, c in enumerate(defs if isinstance(defs, list) else []):
            if isinstance(c, dict):
                yield i, c


def gpu_count(container: dict[str, Any]) -> int:
    total = 0
    for req in as_list(container.get("resourceRequirements")):
        if isinstance(req, dict) and str(req.get("type", "")).upper() == "GPU":
            try:
                total += int(str(req.get("value", "0")))
            except ValueError:
                total += 1
    return total


def task_definitions(doc: PositionedDoc) -> Iterator[TaskDef]:
    data = doc.data
    if not isinstance(data, dict):
        return
    if isinstance(data.get("taskDefinition"), dict):
        yield TaskDef(doc, ("taskDefinition",), data["taskDefinition"])
    elif isinstance(data.get("containerDefinitions"), list):
        yield TaskDef(doc, (), data)


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """An ecs.config file, or a user-data script that writes one."""

    file: str
    settings: dict[str, tuple[str, int]]  # key -> (value, line)
    line: int = 1  # the first line that writes /etc/ecs/ecs.config (or 1 for the file itself)


_ASSIGN = re.compile(r"^\s*(?:echo\s+['\"]?)?(ECS_[A-Z_]+)=([^'\"\s>]*)")


def agent_config(source: str, text: str) -> AgentConfig | None:
    name = source.rsplit("/", 1)[-1]
    is_config = name == "ecs.config"
    if not is_config and "/etc/ecs/ecs.config" not in text:
        return None
    settings: dict[str, tuple[str, int]] = {}
    first = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not first and "/etc/ecs/ecs.config" in line:
            first = number
        match = _ASSIGN.match(line)
        if match and (is_config or "ecs.config" in line or "cat" not in line):
            settings[match.group(1)] = (match.group(2), number)
    return AgentConfig(source, settings, first or 1)
