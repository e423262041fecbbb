"""One YAML loader for every gpuherd input: plain data plus the line and column of each value.

Parsing goes through PyYAML's `compose` with the LibYAML-backed loader when it is installed: it
keeps every node's position at the cost of no second parser (ruamel's round-trip loader is more
than an order of magnitude slower on large inputs). Positions are not copied into the data; the
node tree is kept beside it and walked on demand when a message needs a position, so the common
case (no error) pays nothing for them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

__all__ = [
    "DuplicateKey",
    "Path",
    "Pos",
    "PositionedDoc",
    "YamlError",
    "load_document",
    "load_documents",
]

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # LibYAML when built with it

Path = tuple[str | int, ...]

_STR_TAG = "tag:yaml.org,2002:str"
_MAX_DEPTH = 400
# Aliases can make a small file expand exponentially ("billion laughs"); stop well before that.
_MAX_NODES = 2_000_000


@dataclass(frozen=True, slots=True)
class Pos:
    """A 1-based line and column in a source file."""

    line: int
    column: int


@dataclass(frozen=True, slots=True)
class DuplicateKey:
    """A mapping key that appears twice; the later value wins, as in every YAML loader."""

    path: Path
    pos: Pos


class YamlError(Exception):
    """Input that is not valid YAML (or that gpuherd refuses to expand); carries its position."""

    def __init__(self, source: str, pos: Pos, message: str) -> None:
        super().__init__(f"{source}:{pos.line}:{pos.column}: {message}")
        self.source = source
        self.pos = pos
        self.message = message


def _pos(node: yaml.Node) -> Pos:
    mark = node.start_mark
    return Pos(mark.line + 1, mark.column + 1)


@dataclass(slots=True)
class PositionedDoc:
    """One YAML document: `data` as plain Python values, with positions available by path."""

    source: str
    data: Any
    node: yaml.Node | None
    duplicates: list[DuplicateKey] = field(default_factory=list)

    @property
    def start(self) -> Pos:
        return _pos(self.node) if self.node is not None else Pos(1, 1)

    def _walk(self, path: Path) -> Iterator[tuple[yaml.Node, yaml.Node | None]]:
        """Yield (value node, key node or None) for each step of `path` that exists."""
        node = self.node
        for step in path:
            if isinstance(node, yaml.MappingNode):
                found: tuple[yaml.Node, yaml.Node] | None = None
                for key_node, value_node in node.value:
                    if isinstance(key_node, yaml.ScalarNode) and _same_key(key_node, step):
                        found = (value_node, key_node)  # the last duplicate wins, like the data
                if found is None:
                    return
                node = found[0]
                yield found
            elif isinstance(node, yaml.SequenceNode) and isinstance(step, int):
                if not 0 <= step < len(node.value):
                    return
                node = node.value[step]
                yield node, None
            else:
                return

    def value_pos(self, path: Path) -> Pos:
        """Position of the value at `path`, or of the deepest ancestor that exists."""
        last = self.start
        for value_node, _key in self._walk(path):
            last = _pos(value_node)
        return last

    def key_pos(self, path: Path) -> Pos:
        """Position of the key naming `path` (for mapping entries), else of its value."""
        last = self.start
        for value_node, key_node in self._walk(path):
            last = _pos(key_node if key_node is not None else value_node)
        return last

    def has_path(self, path: Path) -> bool:
        return sum(1 for _ in self._walk(path)) == len(path)


def _same_key(key_node: yaml.ScalarNode, step: str | int) -> bool:
    if key_node.tag == _STR_TAG:
        return bool(key_node.value == step)
    return str(key_node.value) == str(step)


class _Builder:
    """Turns a composed node tree into plain data, noting duplicate keys as it goes."""

    def __init__(self, loader: Any, source: str) -> None:
        self._loader = loader
        self._source = source
        self._nodes = 0
        self.duplicates: list[DuplicateKey] = []

    def build(self, node: yaml.Node, path: Path, depth: int) -> Any:
        self._nodes += 1
        if self._nodes > _MAX_NODES:
            raise YamlError(self._source, _pos(node), "document expands to too many values")
        if depth > _MAX_DEPTH:
            raise YamlError(self._source, _pos(node), "document is nested too deeply")
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _STR_TAG:
                return node.value
            return self._scalar(node)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        raise YamlError(self._source, _pos(node), f"unsupported YAML node {type(node).__name__}")

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        try:
            return self._loader.construct_object(node)
        except yaml.YAMLError as exc:
            raise YamlError(self._source, _pos(node), _problem(exc)) from None
        except (ValueError, OverflowError) as exc:
            raise YamlError(self._source, _pos(node), f"bad scalar value: {exc}") from None

    def _mapping(self, node: yaml.MappingNode, path: Path, depth: int) -> dict[Any, Any]:
        try:
            self._loader.flatten_mapping(node)  # resolves `<<` merge keys in place
        except yaml.YAMLError as exc:
            raise YamlError(self._source, _pos(node), _problem(exc)) from None
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self.build(key_node, path, depth + 1)
            if isinstance(key, list | dict):
                raise YamlError(self._source, _pos(key_node), "a mapping key must be a scalar")
            if key in result:
                self.duplicates.append(DuplicateKey((*path, key), _pos(key_node)))
            result[key] = self.build(value_node, (*path, key), depth + 1)
        return result


def _problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        parts = [p for p in (exc.context, exc.problem) if p]
        return "; ".join(parts) or "invalid YAML"
    return str(exc) or "invalid YAML"


def _error_pos(exc: yaml.YAMLError) -> Pos:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        if mark is not None:
            return Pos(mark.line + 1, mark.column + 1)
    return Pos(1, 1)


def load_documents(text: str | bytes, *, source: str) -> list[PositionedDoc]:
    """Parse every document in `text`; raise YamlError (with position) on the first bad one."""
    loader = _Loader(text)
    docs: list[PositionedDoc] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            builder = _Builder(loader, source)
            data = builder.build(node, (), 0) if node is not None else None
            loader.constructed_objects.clear()
            docs.append(PositionedDoc(source, data, node, builder.duplicates))
    except yaml.YAMLError as exc:
        raise YamlError(source, _error_pos(exc), _problem(exc)) from None
    except RecursionError:
        raise YamlError(source, Pos(1, 1), "document is nested too deeply") from None
    finally:
        loader.dispose()
    return docs


def load_document(text: str | bytes, *, source: str) -> PositionedDoc:
    """Parse a file that must hold exactly one YAML document (an empty file is one null doc)."""
    docs = load_documents(text, source=source)
    if not docs:
        return PositionedDoc(source, None, None)
    if len(docs) > 1:
        raise YamlError(source, docs[1].start, "expected one YAML document, found several")
    return docs[0]
