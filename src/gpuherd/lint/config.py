"""`.gpuherd-lint.yaml`: select/ignore and per-rule settings, found upward from the linted path.

select: [gpu-limits, rolling-update]     # only these rules (default: all)
ignore: [gpu-zero]                       # skip these
rules:
  gpu-job-bounds: {require_backoff_limit: true}   # a rule's options (docs/rules.md)
  rolling-update: {severity: error}               # and its severity
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from gpuherd.lint.model import SEVERITY_RANK, Severity
from gpuherd.lint.rules.api import OptionValue, Rule, option_type_ok, type_name
from gpuherd.yamlpos import PositionedDoc, YamlError, load_document

CONFIG_NAME = ".gpuherd-lint.yaml"
_KEYS = ("select", "ignore", "rules")


class LintConfigError(Exception):
    pass


@dataclass
class LintConfig:
    path: Path | None = None
    select: set[str] | None = None
    ignore: set[str] = field(default_factory=set)
    rule_options: dict[str, dict[str, OptionValue]] = field(default_factory=dict)
    severities: dict[str, Severity] = field(default_factory=dict)


def find_config(start: Path) -> Path | None:
    here = start.resolve()
    if here.is_file():
        here = here.parent
    for directory in (here, *here.parents):
        candidate = directory / CONFIG_NAME
        if candidate.is_file():
            return candidate
    return None


def load_lint_config(path: Path, rules: Mapping[str, Rule]) -> LintConfig:
    try:
        doc = load_document(path.read_text(), source=str(path))
    except (OSError, YamlError) as exc:
        raise LintConfigError(str(exc)) from None
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        raise LintConfigError(f"{path}:1:1: expected a mapping with select, ignore or rules")
    config = LintConfig(path=path)
    for key, value in data.items():
        where = _where(doc, (key,))
        if key not in _KEYS:
            raise LintConfigError(
                f"{where}: unknown key {key!r} (expected select, ignore or rules)"
            )
        if key == "rules":
            _load_rules(doc, value, rules, config)
            continue
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise LintConfigError(f"{where}: {key} must be a list of rule ids")
        unknown = sorted(set(value) - set(rules))
        if unknown:
            raise LintConfigError(f"{where}: unknown rule(s) {', '.join(unknown)}")
        if key == "select":
            config.select = set(value)
        else:
            config.ignore = set(value)
    return config


def _where(doc: PositionedDoc, path: tuple[str, ...]) -> str:
    pos = doc.key_pos(path)
    return f"{doc.source}:{pos.line}:{pos.column}"


def _load_rules(
    doc: PositionedDoc, value: Any, rules: Mapping[str, Rule], config: LintConfig
) -> None:
    if not isinstance(value, dict):
        raise LintConfigError(f"{_where(doc, ('rules',))}: rules must map rule ids to settings")
    for rule_id, settings in value.items():
        where = _where(doc, ("rules", rule_id))
        if rule_id not in rules:
            raise LintConfigError(f"{where}: unknown rule {rule_id!r}")
        if not isinstance(settings, dict):
            raise LintConfigError(f"{where}: settings of {rule_id} must be a mapping")
        declared = rules[rule_id].OPTIONS
        for name, setting in settings.items():
            at = _where(doc, ("rules", rule_id, name))
            if name == "severity":
                if setting not in SEVERITY_RANK:
                    raise LintConfigError(f"{at}: severity must be error, warning or info")
                config.severities[rule_id] = cast(Severity, setting)
                continue
            option = declared.get(name)
            if option is None:
                known = ", ".join(["severity", *sorted(declared)])
                raise LintConfigError(f"{at}: {rule_id} has no option {name!r} (it has: {known})")
            if not option_type_ok(option, setting):
                raise LintConfigError(f"{at}: {rule_id}.{name} must be a {type_name(option)}")
            config.rule_options.setdefault(rule_id, {})[name] = setting
