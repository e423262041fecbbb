"""A lint finding, the problem a rule reports before the engine stamps it, and the severities."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning", "info"]
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "error": 2}


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One problem at a 1-based line and column; `object` names the Kubernetes object etc.
    A finding on a live object (`lint --cluster`) has no line: `file` is
    `cluster:NAMESPACE/Kind/NAME`, line and column are 0 and `field` is the path inside the
    object (`spec.template.spec.containers[0].resources.limits`; "" for the whole object)."""

    rule: str
    severity: Severity
    file: str
    line: int
    column: int
    object: str
    message: str
    fix: str
    field: str | None = None

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.file, self.line, self.column, self.rule)


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """What a rule yields: a Finding without its rule id; severity None means the default."""

    file: str
    line: int
    column: int
    object: str
    message: str
    fix: str
    severity: Severity | None = None
