"""What a rule is: a module with ID, SEVERITY, OPTIONS, a docstring and `check`.

`check(ctx, options)` yields Problems: where and what, never which rule or (unless it differs
from the default) how severe. The engine stamps the rule id and default severity, applies
`--severity-override`, and turns a rule's crash into a finding. OPTIONS declares the rule's
settings with defaults; `.gpuherd-lint.yaml` sets them under `rules: {ID: {name: value}}` and
the generated reference (docs/rules.md) lists them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from gpuherd.lint.model import Problem, Severity

if TYPE_CHECKING:
    from gpuherd.lint.rules.base import LintContext

OptionValue = bool | int | str | list[str]


@dataclass(frozen=True)
class Option:
    default: OptionValue
    help: str


Options = Mapping[str, Option]
RuleOptions = Mapping[str, OptionValue]  # resolved: every declared option, defaulted


class Rule(Protocol):
    """A rule module (rules are modules; mypy checks each against this protocol)."""

    ID: str
    SEVERITY: Severity
    OPTIONS: Options

    def check(self, ctx: LintContext, options: RuleOptions, /) -> Iterable[Problem]: ...


def resolve_options(rule: Rule, given: Mapping[str, OptionValue] | None) -> dict[str, OptionValue]:
    """Defaults overlaid with the configured values (already validated by the config loader)."""
    resolved = {name: option.default for name, option in rule.OPTIONS.items()}
    resolved.update(given or {})
    return resolved


def strings(value: OptionValue) -> list[str]:
    """A list-of-strings option's value (the config loader has checked its type)."""
    return [str(v) for v in value] if isinstance(value, list) else []


def option_type_ok(option: Option, value: object) -> bool:
    default = option.default
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def type_name(option: Option) -> str:
    default = option.default
    if isinstance(default, bool):
        return "boolean"
    if isinstance(default, int):
        return "integer"
    if isinstance(default, str):
        return "string"
    return "list of strings"
