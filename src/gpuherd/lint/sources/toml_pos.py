"""Line and column of a key path in TOML text (tomllib parses values but keeps no positions).

Good enough for the config files gpuherd lints: finds the deepest `[table]` header that is a
prefix of the path, then the first `key =` line under it; list items point at the value.
"""

from __future__ import annotations

import re

from gpuherd.yamlpos import Path, Pos

_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")


def _split_dotted(name: str) -> list[str]:
    parts = re.findall(r'"([^"]*)"|\'([^\']*)\'|([^."\'\s]+)', name)
    return [a or b or c for a, b, c in parts]


def toml_pos(text: str, path: Path) -> Pos:
    lines = text.splitlines()
    keys = [str(p) for p in path if not isinstance(p, int)]
    best_line, best_depth = 0, 0
    for number, line in enumerate(lines):
        match = _HEADER.match(line)
        if match:
            table = _split_dotted(match.group(1))
            if table == keys[: len(table)] and len(table) > best_depth:
                best_line, best_depth = number + 1, len(table)
    if best_depth == len(keys):
        return Pos(best_line, 1)
    leaf = keys[best_depth]
    for number in range(best_line, len(lines)):
        line = lines[number]
        if number > best_line and _HEADER.match(line):
            break
        match = re.match(rf'^(\s*)("?{re.escape(leaf)}"?)\s*=\s*', line)
        if match:
            if isinstance(path[-1], int) if path else False:
                return Pos(number + 1, match.end() + 1)
            return Pos(number + 1, len(match.group(1)) + 1)
    # A key left at its default: stock configs show it as a commented line; point there.
    for number in range(best_line, len(lines)):
        if number > best_line and _HEADER.match(lines[number]):
            break
        if re.match(rf'^\s*#\s*"?{re.escape(leaf)}"?\s*=', lines[number]):
            return Pos(number + 1, 1)
    return Pos(best_line or 1, 1)
