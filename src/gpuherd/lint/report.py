"""Render findings as text, JSON (version 1) or SARIF 2.1.0."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from gpuherd import __version__
from gpuherd.lint.engine import LintResult
from gpuherd.lint.model import Finding
from gpuherd.lint.rules import RULES
from gpuherd.lint.rules.api import Rule

_SARIF_LEVEL = {"error": "error", "warning": "warning", "info": "note"}


def location(f: Finding) -> str:
    """FILE:LINE:COL, or for a live object `cluster:NS/Kind/NAME: field.path`."""
    if f.field is None:
        return f"{f.file}:{f.line}:{f.column}"
    return f"{f.file}: {f.field}" if f.field else f.file


def _units(result: LintResult) -> str:
    return f"{result.files} {result.unit}{'s' if result.files != 1 else ''}"


def as_text(result: LintResult) -> str:
    lines = []
    for f in result.findings:
        where = f" [{f.object}]" if f.object else ""
        lines.append(f"{location(f)}: {f.severity} {f.rule} {f.message}{where}")
        lines.append(f"    fix: {f.fix}")
    counts = Counter(f.severity for f in result.findings)
    total = len(result.findings)
    detail = ", ".join(
        f"{counts[s]} {s}{'s' if counts[s] != 1 else ''}"
        for s in ("error", "warning", "info")
        if counts[s]
    )
    lines.append(
        f"{total} finding{'s' if total != 1 else ''}"
        + (f" ({detail})" if detail else "")
        + f" in {_units(result)}"
    )
    return "\n".join(lines)


def statistics(result: LintResult) -> list[tuple[str, str, int]]:
    """(rule, severity, count) per rule and severity, most frequent first."""
    counts = Counter((f.rule, f.severity) for f in result.findings)
    return sorted(
        ((rule, severity, n) for (rule, severity), n in counts.items()),
        key=lambda row: (-row[2], row[0], row[1]),
    )


def as_statistics_text(result: LintResult) -> str:
    rows = statistics(result)
    width = max((len(rule) for rule, _s, _n in rows), default=4)
    lines = [f"{'count':>5}  {'rule':<{width}}  severity"]
    lines += [f"{n:>5}  {rule:<{width}}  {severity}" for rule, severity, n in rows]
    total = len(result.findings)
    lines.append(f"{total:>5}  {'total':<{width}}  in {_units(result)}")
    return "\n".join(lines)


def as_statistics_json(result: LintResult) -> str:
    return json.dumps(
        {
            "version": 1,
            "files": result.files,
            "total": len(result.findings),
            "statistics": [
                {"rule": rule, "severity": severity, "count": n}
                for rule, severity, n in statistics(result)
            ],
            **result.extra,
        },
        indent=2,
    )


def _finding_json(f: Finding) -> dict[str, Any]:
    found: dict[str, Any] = {
        "rule": f.rule,
        "severity": f.severity,
        "file": f.file,
        "line": f.line,
        "column": f.column,
        "object": f.object,
        "message": f.message,
        "fix": f.fix,
    }
    if f.field is not None:
        found["field"] = f.field
    return found


def as_json(result: LintResult) -> str:
    return json.dumps(
        {
            "version": 1,
            "files": result.files,
            "findings": [_finding_json(f) for f in result.findings],
            **result.extra,
        },
        indent=2,
    )


def rule_doc(rule: Rule) -> tuple[str, str]:
    """(one-line summary, full docstring) of a rule module."""
    doc = (getattr(rule, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else rule.ID, doc


def _sarif_rule(rule_id: str, rule: Rule) -> dict[str, Any]:
    summary, full = rule_doc(rule)
    return {
        "id": rule_id,
        "name": "".join(part.title() for part in rule_id.split("-")),
        "shortDescription": {"text": summary},
        "fullDescription": {"text": full},
        "help": {"text": full, "markdown": full},
        "defaultConfiguration": {"level": _SARIF_LEVEL[rule.SEVERITY]},
        "properties": {"tags": ["gpu"]},
    }


def _sarif_location(f: Finding) -> dict[str, Any]:
    if f.field is None:
        return {
            "physicalLocation": {
                "artifactLocation": {"uri": f.file},
                "region": {"startLine": f.line, "startColumn": f.column},
            }
        }
    # A live object has no file: a stable URI names it, the field path is its logical place.
    name = f.file.removeprefix("cluster:")
    return {
        "physicalLocation": {"artifactLocation": {"uri": f"k8s://{name}"}},
        "logicalLocations": [
            {
                "name": f.field or name,
                "fullyQualifiedName": f"{name}:{f.field}" if f.field else name,
                "kind": "property" if f.field else "object",
            }
        ],
    }


def as_sarif(result: LintResult) -> str:
    rules = [_sarif_rule(rid, rule) for rid, rule in RULES.items()]
    rules.append(
        {
            "id": "parse-error",
            "name": "ParseError",
            "shortDescription": {"text": "The file does not parse."},
            "help": {"text": "Fix the YAML/JSON/TOML syntax."},
            "defaultConfiguration": {"level": "error"},
        }
    )
    rules.append(
        {
            "id": "unknown-input",
            "name": "UnknownInput",
            "shortDescription": {"text": "The file is of no input type gpuherd reads."},
            "help": {"text": "Name it with its format's extension, or leave it out."},
            "defaultConfiguration": {"level": "note"},
        }
    )
    rules.append(
        {
            "id": "unreadable",
            "name": "Unreadable",
            "shortDescription": {"text": "A file in a linted directory could not be read."},
            "help": {"text": "Make it readable, or leave it out of the paths."},
            "defaultConfiguration": {"level": "error"},
        }
    )
    rules.append(
        {
            "id": "internal-error",
            "name": "InternalError",
            "shortDescription": {"text": "A rule failed on this input."},
            "help": {"text": "Please report it with the input that caused it."},
            "defaultConfiguration": {"level": "error"},
        }
    )
    index = {r["id"]: i for i, r in enumerate(rules)}
    return json.dumps(
        {
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [
                {
                    "tool": {
                        "driver": {
                            "name": "gpuherd",
                            "version": __version__,
                            "informationUri": "https://github.com/gpuherd/gpuherd",
                            "rules": rules,
                        }
                    },
                    "results": [
                        {
                            "ruleId": f.rule,
                            "ruleIndex": index[f.rule],
                            "level": _SARIF_LEVEL[f.severity],
                            "message": {"text": f"{f.message}. Fix: {f.fix}"},
                            "locations": [_sarif_location(f)],
                        }
                        for f in result.findings
                    ],
                }
            ],
        },
        indent=2,
    )
