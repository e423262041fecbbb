"""One YAML loader for every gpuherd input: plain data plus the line and column of each value.

Parsing goes through PyYAML's `compose` with the LibYAML-backed loader when it is installed: it
keeps every node's position at the cost of no second parser (ruamel's round-trip loader is more
than an order of magnitude slower on large inputs). Positions are not copied into the data: a
compact index of (line, column) tuples is built beside it in the same walk, and looked up by path
only when a message needs a position.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
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


# The position index mirrors the data: every value is (line, column, children), where children
# is None for a scalar, a list of child entries for a sequence, and for a mapping a dict of
# key -> (key line, key column, value entry). Plain tuples of ints cost a fraction of PyYAML's
# nodes (two Mark objects each), which are dropped as soon as a document is built.
_Entry = tuple[int, int, Any]
_Link = tuple[Any, str | int] | None  # (parent link, key): a path built only when needed


@dataclass(slots=True)
class PositionedDoc:
    """One YAML document: `data` as plain Python values, with positions available by path."""

    source: str
    data: Any
    index: _Entry | None
    duplicates: list[DuplicateKey] = field(default_factory=list)

    @property
    def start(self) -> Pos:
        return Pos(self.index[0], self.index[1]) if self.index is not None else Pos(1, 1)

    def _walk(self, path: Path) -> Iterator[tuple[_Entry, Pos | None]]:
        """Yield (value entry, key position or None) for each step of `path` that exists."""
        entry = self.index
        for step in path:
            children = entry[2] if entry is not None else None
            if isinstance(children, dict):
                found = children.get(step)
                if found is None and not isinstance(step, str):
                    found = next((v for k, v in children.items() if str(k) == str(step)), None)
                if found is None:
                    return
                entry = found[2]
                yield entry, Pos(found[0], found[1])
            elif isinstance(children, list) and isinstance(step, int):
                if not 0 <= step < len(children):
                    return
                entry = children[step]
                yield entry, None
            else:
                return

    def value_pos(self, path: Path) -> Pos:
        """Position of the value at `path`, or of the deepest ancestor that exists."""
        last = self.start
        for entry, _key in self._walk(path):
            last = Pos(entry[0], entry[1])
        return last

    def key_pos(self, path: Path) -> Pos:
        """Position of the key naming `path` (for mapping entries), else of its value."""
        last = self.start
        for entry, key in self._walk(path):
            last = key if key is not None else Pos(entry[0], entry[1])
        return last

    def has_path(self, path: Path) -> bool:
        return sum(1 for _ in self._walk(path)) == len(path)


def _path_of(link: _Link) -> Path:
    steps: list[str | int] = []
    while link is not None:
        link, step = link
        steps.append(step)
    return tuple(reversed(steps))


_ScalarNode, _SequenceNode, _MappingNode = yaml.ScalarNode, yaml.SequenceNode, yaml.MappingNode
_INT_RE = re.compile(r"^[-+]?[0-9]+$")
_INT_TAG = "tag:yaml.org,2002:int"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_NULL_TAG = "tag:yaml.org,2002:null"


class _Builder:
    """Turns a composed node tree into plain data and a position index, noting duplicate keys."""

    def __init__(self, loader: Any, source: str, skip: frozenset[str] = frozenset()) -> None:
        self._loader = loader
        self._source = source
        self._skip = skip
        self._nodes = 0
        self.duplicates: list[DuplicateKey] = []

    def build(self, node: yaml.Node, link: _Link, depth: int) -> tuple[Any, _Entry]:
        mark = node.start_mark
        if type(node) is _ScalarNode:  # the hot path: most nodes are plain strings
            value = node.value if node.tag == _STR_TAG else self._scalar(node)
            return value, (mark.line + 1, mark.column + 1, None)
        # Aliases can only multiply values through collections: counting their items suffices.
        self._nodes += len(node.value) + 1
        if self._nodes > _MAX_NODES:
            raise YamlError(self._source, _pos(node), "document expands to too many values")
        if depth > _MAX_DEPTH:
            raise YamlError(self._source, _pos(node), "document is nested too deeply")
        if type(node) is _SequenceNode:
            items = []
            entries = []
            for i, item in enumerate(node.value):
                value, entry = self.build(item, (link, i), depth + 1)
                items.append(value)
                entries.append(entry)
            return items, (mark.line + 1, mark.column + 1, entries)
        if type(node) is _MappingNode:
            return self._mapping(node, link, depth)
        raise YamlError(self._source, _pos(node), f"unsupported YAML node {type(node).__name__}")

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        tag, value = node.tag, node.value
        if tag == _STR_TAG:
            return value
        # Fast paths for the plain forms; anything else goes through PyYAML's constructor.
        if tag == _INT_TAG and _INT_RE.match(value):
            return int(value)
        if tag == _NULL_TAG:
            return None
        if tag == _BOOL_TAG and value in ("true", "false"):
            return value == "true"
        try:
            return self._loader.construct_object(node)
        except yaml.YAMLError as exc:
            raise YamlError(self._source, _pos(node), _problem(exc)) from None
        except (ValueError, OverflowError) as exc:
            raise YamlError(self._source, _pos(node), f"bad scalar value: {exc}") from None

    def _mapping(self, node: yaml.MappingNode, link: _Link, depth: int) -> tuple[Any, _Entry]:
        if any(key.tag == _MERGE_TAG for key, _value in node.value):
            try:
                self._loader.flatten_mapping(node)  # resolves `<<` merge keys in place
            except yaml.YAMLError as exc:
                raise YamlError(self._source, _pos(node), _problem(exc)) from None
        result: dict[Any, Any] = {}
        entries: dict[Any, tuple[int, int, _Entry]] = {}
        build = self.build
        skip = self._skip
        for key_node, value_node in node.value:
            if type(key_node) is not _ScalarNode:
                raise YamlError(self._source, _pos(key_node), "a mapping key must be a scalar")
            key = key_node.value if key_node.tag == _STR_TAG else self._scalar(key_node)
            key_mark = key_node.start_mark
            if key in result:
                self.duplicates.append(
                    DuplicateKey(
                        (*_path_of(link), key), Pos(key_mark.line + 1, key_mark.column + 1)
                    )
                )
            if key in skip:
                continue
            value, entry = build(value_node, (link, key), depth + 1)
            result[key] = value
            entries[key] = (key_mark.line + 1, key_mark.column + 1, entry)
        mark = node.start_mark
        return result, (mark.line + 1, mark.column + 1, entries)


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


def load_documents(
    text: str | bytes,
    *,
    source: str,
    keep: Callable[[yaml.Node], bool] | None = None,
    skip_keys: frozenset[str] = frozenset(),
) -> list[PositionedDoc]:
    """Parse every document in `text`; raise YamlError (with position) on the first bad one.

    `keep` sees each composed root node; documents it rejects are checked for syntax but not
    built (callers that only read some kinds skip the rest cheaply). Mapping entries whose key
    is in `skip_keys` are left out of the data (e.g. Kubernetes `managedFields`, which no rule
    reads and which dominate `kubectl get -o yaml` dumps).
    """
    loader = _Loader(text)
    docs: list[PositionedDoc] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if keep is not None and node is not None and not keep(node):
                continue
            builder = _Builder(loader, source, skip_keys)
            data, index = builder.build(node, None, 0) if node is not None else (None, None)
            loader.constructed_objects.clear()
            docs.append(PositionedDoc(source, data, index, builder.duplicates))
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
