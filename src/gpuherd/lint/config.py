"""`.gpuherd-lint.yaml`: select/ignore settings, found upward from the linted path (like ruff)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gpuherd.yamlpos import YamlError, load_document

CONFIG_NAME = ".gpuherd-lint.yaml"


class LintConfigError(Exception):
    pass


@dataclass
class LintConfig:
    path: Path | None = None
    select: set[str] | None = None
    ignore: set[str] = field(default_factory=set)


def find_config(start: Path) -> Path | None:
    here = start.resolve()
    if here.is_file():
        here = here.parent
    for directory in (here, *here.parents):
        candidate = directory / CONFIG_NAME
        if candidate.is_file():
            return candidate
    return None


def load_lint_config(path: Path, known: set[str]) -> LintConfig:
    try:
        doc = load_document(path.read_text(), source=str(path))
    except (OSError, YamlError) as exc:
        raise LintConfigError(str(exc)) from None
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        raise LintConfigError(f"{path}:1:1: expected a mapping with select/ignore")
    config = LintConfig(path=path)
    for key, value in data.items():
        pos = doc.key_pos((key,))
        if key not in ("select", "ignore"):
            raise LintConfigError(
                f"{path}:{pos.line}:{pos.column}: unknown key {key!r} (expected select or ignore)"
            )
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise LintConfigError(
                f"{path}:{pos.line}:{pos.column}: {key} must be a list of rule ids"
            )
        unknown = sorted(set(value) - known)
        if unknown:
            raise LintConfigError(
                f"{path}:{pos.line}:{pos.column}: unknown rule(s) {', '.join(unknown)}"
            )
        if key == "select":
            config.select = set(value)
        else:
            config.ignore = set(value)
    return config
