"""docs/rules.md, generated from the rule modules' docstrings (`make docs` rewrites it)."""

from __future__ import annotations

import sys
from pathlib import Path

from gpuherd.lint.report import rule_doc
from gpuherd.lint.rules import RULES

HEADER = """\
# gpuherd lint rules

Generated from the rule modules by `make docs`; do not edit by hand.
`gpuherd lint --explain RULE` prints the same text.

| rule | severity | summary |
|---|---|---|
"""


def render_rules_md() -> str:
    rows = [
        f"| [`{rid}`](#{rid}) | {rule.SEVERITY} | {rule_doc(rule)[0]} |"
        for rid, rule in RULES.items()
    ]
    sections = []
    for rid, rule in RULES.items():
        summary, full = rule_doc(rule)
        body = full[len(summary) :].strip()
        sections.append(f"## {rid}\n\nSeverity: {rule.SEVERITY}. {summary}\n\n{body}\n")
    return HEADER + "\n".join(rows) + "\n\n" + "\n".join(sections)


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/rules.md")
    target.write_text(render_rules_md())
    print(f"wrote {target}")
