"""`gpuherd lint --cluster`: live objects through the same rules as files.

Each live object (already cleaned of server noise by gpuherd.k8s.live) is rendered as indented
JSON under an internal name and linted by the files' engine, so every rule, option, profile and
suppression works unchanged, and cross-object rules see the live Nodes, RuntimeClasses,
volumes and sharing configs as one project. In indented JSON every key and every value starts
at its own position, so a finding's line and column in the rendering lead back to exactly one
field path; its file becomes `cluster:NAMESPACE/Kind/NAME` (`cluster:Kind/NAME` when
cluster-scoped). Internal names inside messages (evidence "in FILE") are rewritten the same way,
and "in the input" reads "in the cluster".

This module imports no Kubernetes client: it works on plain JSON objects.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

from gpuherd.lint.engine import LintOptions, LintResult, lint_sources
from gpuherd.lint.model import Finding
from gpuherd.yamlpos import Path, load_document

_INTERNAL = re.compile(r"@live(\d+)@\.json")
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
# A ConfigMap matters only when it may hold a device-plugin config (as with files).
_PLUGIN_HINTS = ("sharing", "flags")


def location(obj: dict[str, Any]) -> str:
    """`cluster:NAMESPACE/Kind/NAME`, or `cluster:Kind/NAME` for a cluster-scoped object."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"cluster:{ns + '/' if ns else ''}{obj.get('kind', '?')}/{meta.get('name', '?')}"


def field_path(path: Path) -> str:
    """`spec.template.spec.containers[0].resources.limits["nvidia.com/gpu"]`."""
    out = ""
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
        elif _PLAIN_KEY.match(step):
            out += f".{step}" if out else step
        else:
            out += f"[{json.dumps(step)}]"
    return out


def _wanted(obj: dict[str, Any]) -> bool:
    if obj.get("kind") != "ConfigMap":
        return True
    data = obj.get("data")
    return isinstance(data, dict) and any(
        isinstance(v, str) and "version" in v and any(h in v for h in _PLUGIN_HINTS)
        for v in data.values()
    )


def _positions(text: str) -> dict[tuple[int, int], Path]:
    """(line, column) of every key and value in a rendering -> its path (the shallowest
    wins where two coincide, which indented JSON never makes them do)."""
    doc = load_document(text, source="")
    found: dict[tuple[int, int], Path] = {}
    stack: list[tuple[Path, Any]] = [((), doc.index)]
    while stack:
        path, entry = stack.pop()
        if entry is None:
            continue
        found.setdefault((entry[0], entry[1]), path)
        children = entry[2]
        if isinstance(children, dict):
            for key, (line, column, child) in children.items():
                found.setdefault((line, column), (*path, key))
                stack.append(((*path, key), child))
        elif isinstance(children, list):
            stack += [((*path, i), child) for i, child in enumerate(children)]
    return found


def lint_objects(objects: list[dict[str, Any]], options: LintOptions) -> LintResult:
    """Lint live objects; findings name the object and the field path (see the module doc)."""
    chosen = [o for o in objects if _wanted(o)]
    texts = [json.dumps(o, indent=2) for o in chosen]
    names = [location(o) for o in chosen]
    result = lint_sources([(f"@live{i}@.json", t) for i, t in enumerate(texts)], options)
    positions: dict[int, dict[tuple[int, int], Path]] = {}

    def rename(text: str) -> str:
        # Rules speak of files ("any Node in the input"); here the input is the cluster.
        text = text.replace(" in the input", " in the cluster")
        return _INTERNAL.sub(lambda m: names[int(m.group(1))], text)

    placed: list[tuple[tuple[str, int, int, str], Finding]] = []
    for f in result.findings:
        internal = _INTERNAL.fullmatch(f.file)
        if internal is None:  # an internal error of a rule: not on any object
            placed.append(((f.file, f.line, f.column, f.rule), f))
            continue
        i = int(internal.group(1))
        if i not in positions:
            positions[i] = _positions(texts[i])
        path = positions[i].get((f.line, f.column), ())
        moved = replace(
            f,
            file=names[i],
            line=0,
            column=0,
            field=field_path(path),
            object=rename(f.object),
            message=rename(f.message),
            fix=rename(f.fix),
        )
        placed.append(((names[i], f.line, f.column, f.rule), moved))
    placed.sort(key=lambda item: item[0])  # by object, then in the object's own field order
    return LintResult(len(chosen), [f for _key, f in placed], unit="object")
