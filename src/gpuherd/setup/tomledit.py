"""TOML editing that keeps what it does not own: comments, order, indentation (tomlkit)."""

from __future__ import annotations

import copy
import re
import tomllib
from typing import Any

import tomlkit
import tomlkit.exceptions
from tomlkit.container import Container, OutOfOrderTableProxy
from tomlkit.items import AoT, Comment, InlineTable, Item, Table, Whitespace
from tomlkit.toml_document import TOMLDocument

from gpuherd.setup.model import SetupInputError

# A table whose parts are spread over the file (another table's header sits between them, as
# after `nvidia-ctk` appended its runtime at the end) comes back from tomlkit as a proxy.
TableLike = Table | OutOfOrderTableProxy
Node = TOMLDocument | Table | Container | OutOfOrderTableProxy


def concrete(table: TableLike) -> Table:
    """The part of a table that new keys and sub-tables join (the proxy's first part)."""
    return table if isinstance(table, Table) else table._tables[0]


def parse(path: str, raw: bytes) -> TOMLDocument:
    """Parse for editing; any error names the file, line and column and changes nothing."""
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        raise SetupInputError(path, f"not UTF-8 text ({exc.reason})") from None
    try:
        # tomllib is the strict reference: tomlkit accepts a few documents containerd would not.
        tomllib.loads(text)
        return tomlkit.parse(text)
    except tomllib.TOMLDecodeError as exc:
        # Python < 3.14 puts the position only into the message: "... (at line 3, column 7)".
        where = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        message = str(exc).split(" (at ", 1)[0]
        if where is None:
            raise SetupInputError(path, message) from None
        raise SetupInputError(path, message, int(where.group(1)), int(where.group(2))) from None
    except tomlkit.exceptions.ParseError as exc:
        raise SetupInputError(path, str(exc).split(" at line", 1)[0], exc.line, exc.col) from None
    except (RecursionError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise SetupInputError(path, f"cannot be edited safely: {exc}") from None


def dumps(doc: TOMLDocument) -> bytes:
    return tomlkit.dumps(doc).encode()


def get_table(node: Node, key: str, path: str) -> TableLike | None:
    """A sub-table, None when absent; anything else under that key is an input error."""
    item = node.get(key)
    if item is None:
        return None
    if isinstance(item, OutOfOrderTableProxy):
        return item
    if isinstance(item, InlineTable | AoT) or not isinstance(item, Table):
        raise SetupInputError(path, f"`{key}` is not a table; gpuherd edits only tables")
    return item


def ensure_table(node: Node, key: str, path: str, *, super_table: bool = False) -> TableLike:
    found = get_table(node, key, path)
    if found is not None:
        return found
    node[key] = tomlkit.table(is_super_table=super_table)
    created = get_table(node, key, path)
    assert created is not None
    return created


def plain(item: Any) -> Any:
    """tomlkit items as plain Python values (for comparison and judging)."""
    if isinstance(item, Item):
        return item.unwrap()
    return copy.deepcopy(item)


def _indent_of(table: Table) -> tuple[int, int, int]:
    """(header indent, item indent step, sub-table header step) as this table is written."""
    header = len(table.trivia.indent)
    item_step = sub_step = None
    for key, value in table.value.body:
        if key is None:
            continue
        if isinstance(value, Table) and sub_step is None:
            sub_step = len(value.trivia.indent) - header
        elif not isinstance(value, Table) and item_step is None:
            item_step = len(value.trivia.indent) - header
    return header, max(item_step or 0, 0), max(sub_step or 0, 0)


def style_like(table: Table, sibling: Table | None, parent_header: int | None = None) -> None:
    """Indent a new table as its sibling is indented, so the file keeps one look."""
    if sibling is not None:
        header, item_step, sub_step = _indent_of(sibling)
    else:
        header, item_step, sub_step = (parent_header or 0), 0, 0
    _restyle(table, header, item_step, sub_step)


def _restyle(table: Table, header: int, item_step: int, sub_step: int) -> None:
    table.trivia.indent = " " * header
    for key, value in table.value.body:
        if key is None:
            continue
        if isinstance(value, Table):
            _restyle(value, header + sub_step, item_step, sub_step)
        else:
            value.trivia.indent = " " * (header + item_step)


def header_indent(table: TableLike) -> int:
    return len(concrete(table).trivia.indent)


def _last_leaf(table: Table) -> Table:
    while True:
        keyed = [v for k, v in table.value.body if k is not None]
        if not keyed or not isinstance(keyed[-1], Table):
            return table
        table = keyed[-1]


def detach_trailing_comments(parent: TableLike) -> list[Item]:
    """Comments at the end of `parent`'s last table belong to the table that follows it in the
    file (tomlkit files them under the one before). Take them out, so that a table appended to
    `parent` goes above them and they stay with the table they describe."""
    if not isinstance(parent, Table):
        return []
    leaf = _last_leaf(parent)
    body = leaf.value.body
    start = len(body)
    while start > 0 and body[start - 1][0] is None:
        start -= 1
    tail = [item for _key, item in body[start:]]
    if not any(isinstance(item, Comment) for item in tail):
        return []
    first_comment = next(i for i, item in enumerate(tail) if isinstance(item, Comment))
    moved = tail[first_comment:]
    del body[start + first_comment :]
    return moved


def append_items(table: Table, items: list[Item]) -> None:
    leaf = _last_leaf(table)
    for item in items:
        leaf.value.body.append((None, item))


def blank_line() -> Whitespace:
    return Whitespace("\n")


def set_key(table: TableLike | TOMLDocument, key: str, value: Any) -> None:
    """Set `key`; a new key is indented like the table's other keys (tomlkit guesses wrong)."""
    new = key not in table
    table[key] = value
    if not new or not isinstance(table, Table):
        return
    indents = [
        v.trivia.indent
        for k, v in table.value.body
        if k is not None and k.key != key and not isinstance(v, Table)
    ]
    item = table.value.item(key)
    if indents and isinstance(item, Item):
        item.trivia.indent = indents[-1]


def reindent_from_zero(table: TableLike) -> None:
    """Move a copied table to the left margin, keeping its own steps."""
    table = concrete(table)
    _header, item_step, sub_step = _indent_of(table)
    _restyle(table, 0, item_step, sub_step)
