"""Terraform: `aws_ecs_task_definition` resources, user data writing the ECS agent config, AMIs.

Container definitions come as `jsonencode(...)` or as a `<<EOF` heredoc of JSON, where
`${...}` interpolations stand for unknown values (a string inside quotes, null outside).

python-hcl2 parses the file; the `jsonencode(...)` argument comes back as HCL expression text,
which `_HclLiteral` turns into data: lists, objects (`=` or `:`), strings (interpolations kept
as text), numbers, booleans, null. References and function calls are unknown (None); for
`cond ? a : b` the first branch is taken, the configuration with the feature switched on (seed
002 writes `resourceRequirements = var.gpu_enabled ? [...] : []`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from gpuherd.lint.sources.ecs import AgentConfig, TaskDef, agent_config
from gpuherd.yamlpos import Pos, PositionedDoc

_TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\$]|\\.|\$\{(?:[^{}]|\{[^{}]*\})*\}|\$(?!\{))*")'
    r"|(?P<num>-?\d+(?:\.\d+)?)|(?P<ident>[A-Za-z_][\w.\-\[\]*]*)|(?P<punct>[\[\]{}(),=:?]))"
)


class _HclLiteral:
    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if match is None or match.end() == pos:
                if text[pos:].strip():
                    raise ValueError(f"unexpected text at {text[pos : pos + 20]!r}")
                break
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind)))
            pos = match.end()
        self.i = 0

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _take(self, value: str | None = None) -> tuple[str, str]:
        token = self._peek()
        if token is None or (value is not None and token[1] != value):
            raise ValueError(f"expected {value or 'a value'}")
        self.i += 1
        return token

    def expr(self) -> Any:
        value = self._primary()
        if self._peek() == ("punct", "?"):
            self._take("?")
            chosen = self.expr()
            self._take(":")
            self.expr()
            return chosen
        return value

    def _primary(self) -> Any:
        kind, value = self._take()
        if kind == "str":
            return bytes(value[1:-1], "utf-8").decode("unicode_escape")
        if kind == "num":
            return float(value) if "." in value else int(value)
        if (kind, value) == ("punct", "["):
            return self._list()
        if (kind, value) == ("punct", "{"):
            return self._object()
        if kind != "ident":
            raise ValueError(f"unexpected {value!r}")
        if self._peek() == ("punct", "("):
            self._skip_call()  # a function call: its value is unknown
            return None
        return {"true": True, "false": False}.get(value)  # null and references: unknown

    def _list(self) -> list[Any]:
        items = []
        while self._peek() != ("punct", "]"):
            items.append(self.expr())
            if self._peek() == ("punct", ","):
                self._take(",")
        self._take("]")
        return items

    def _object(self) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        while self._peek() != ("punct", "}"):
            key_kind, key = self._take()
            key = key[1:-1] if key_kind == "str" else key
            if self._peek() in (("punct", "="), ("punct", ":")):
                self.i += 1
            obj[key] = self.expr()
            if self._peek() == ("punct", ","):
                self._take(",")
        self._take("}")
        return obj

    def _skip_call(self) -> None:
        depth = 0
        while True:
            token = self._take()
            if token[0] == "punct":
                depth += {"(": 1, ")": -1}.get(token[1], 0)
            if depth == 0:
                return


def hcl_literal(text: str) -> Any:
    parser = _HclLiteral(text)
    value = parser.expr()
    if parser._peek() is not None:
        raise ValueError("trailing text")
    return value


_JSONENCODE = re.compile(r"^\$\{jsonencode\((.*)\)\}$", re.S)


class TerraformError(Exception):
    def __init__(self, pos: Pos, message: str) -> None:
        super().__init__(message)
        self.pos = pos
        self.message = message


def parse_terraform(text: str) -> dict[str, Any]:
    """The file as python-hcl2 data; TerraformError with a position when it is not HCL."""
    import hcl2
    from hcl2.utils import SerializationOptions

    options = SerializationOptions(strip_string_quotes=True)
    try:
        return dict(hcl2.loads(text, serialization_options=options))
    except Exception as exc:  # lark raises many error types; most carry line and column
        line = getattr(exc, "line", None)
        column = getattr(exc, "column", None)
        pos = Pos(
            line if isinstance(line, int) and line > 0 else 1,
            column if isinstance(column, int) and column > 0 else 1,
        )
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TerraformError(pos, first) from None


_HEREDOC = re.compile(r"^<<-?\s*(\w+)\n(.*)\n\s*\1$", re.S)
# A JSON string (kept: an interpolation inside it is just unknown text) or a bare interpolation.
_JSON_PART = re.compile(r'"(?:[^"\\]|\\.)*"|\$\{(?:[^{}]|\{[^{}]*\})*\}')
# The ECS GPU-optimized AMI, by name filter or SSM parameter path: it sets
# ECS_ENABLE_GPU_SUPPORT=true in /var/lib/ecs/ecs.config, read before /etc/ecs/ecs.config.
_GPU_AMI = re.compile(
    r"amzn2?-ami-ecs-gpu|al2023-ami-ecs-gpu|/aws/service/ecs/optimized-ami/[\w/.-]*/gpu/"
)


def _heredoc_json(value: str) -> Any:
    match = _HEREDOC.match(value.strip())
    if match is None:
        return None
    body = _JSON_PART.sub(
        lambda m: m.group(0) if m.group(0).startswith('"') else "null", match.group(2)
    )
    try:
        return json.loads(body)
    except ValueError:
        return None


def _container_definitions(value: Any) -> Any:
    text = str(value if value is not None else "").strip()
    match = _JSONENCODE.match(text)
    if match is not None:
        try:
            return hcl_literal(match.group(1))
        except (ValueError, IndexError):
            return None
    return _heredoc_json(text)


def terraform_inputs(source: str, text: str) -> tuple[list[TaskDef], AgentConfig | None]:
    """Task definitions and the ECS agent settings of a .tf file (TerraformError if not HCL)."""
    tasks = list(task_definitions(source, text))
    agent = agent_config(source, text) if "/etc/ecs/ecs.config" in text else None
    return tasks, agent


def mentions_gpu_ami(text: str) -> bool:
    return _GPU_AMI.search(text) is not None


def task_definitions(source: str, text: str) -> Iterator[TaskDef]:
    """ECS task definitions of a .tf file (raises TerraformError when it does not parse)."""
    data = parse_terraform(text)
    for block in data.get("resource") or []:
        for name, body in (block.get("aws_ecs_task_definition") or {}).items():
            if not isinstance(body, dict):
                continue
            containers = _container_definitions(body.get("container_definitions"))
            if containers is None:
                continue
            task = {
                "family": body.get("family") or name,
                "requiresCompatibilities": body.get("requires_compatibilities") or [],
                "containerDefinitions": containers if isinstance(containers, list) else [],
            }
            line = _line_of(text, name)
            yield TaskDef(PositionedDoc(source, task, (line, 3, None)), (), task)


def _line_of(text: str, name: str) -> int:
    """Line of the resource's container_definitions (positions point there)."""
    head = re.search(rf'resource\s+"aws_ecs_task_definition"\s+"{re.escape(name)}"', text)
    start = head.start() if head else 0
    attr = re.compile(r"^\s*container_definitions\s*=", re.M).search(text, start)
    offset = attr.start() if attr else start
    return text.count("\n", 0, offset) + (1 if attr is None or text[offset] != "\n" else 2)
