"""docs/rules.md, generated from the rule modules' docstrings (`make docs` rewrites it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gpuherd.lint.report import rule_doc
from gpuherd.lint.rules import RULES
from gpuherd.lint.rules.api import Rule, type_name

HEADER = """\
# gpuherd lint rules

Generated from the rule modules by `make docs` (`python -m gpuherd.lint.docs docs/rules.md`);
do not edit by hand. `gpuherd lint --explain RULE` prints the same text.

Every rule's severity can be changed with `--severity-override RULE=LEVEL` or in
`.gpuherd-lint.yaml`; rules with options take them there too:

```yaml
rules:
  gpu-job-bounds: {require_backoff_limit: true}
  rolling-update: {severity: error}
```

| rule | severity | summary |
|---|---|---|
"""


def options_md(rule: Rule) -> str:
    """The rule's options as a Markdown table; "" when it has none."""
    if not rule.OPTIONS:
        return ""
    rows = [
        f"| `{name}` | {type_name(o)} | `{json.dumps(o.default)}` | {o.help} |"
        for name, o in rule.OPTIONS.items()
    ]
    head = f"Options (`rules: {{{rule.ID}: {{...}}}}` in `.gpuherd-lint.yaml`):\n\n"
    return head + "| option | type | default | meaning |\n|---|---|---|---|\n" + "\n".join(rows)


def render_rules_md() -> str:
    rows = [
        f"| [`{rid}`](#{rid}) | {rule.SEVERITY} | {rule_doc(rule)[0]} |"
        for rid, rule in RULES.items()
    ]
    sections = []
    for rid, rule in RULES.items():
        summary, full = rule_doc(rule)
        body = full[len(summary) :].strip()
        options = options_md(rule)
        extra = f"\n{options}\n" if options else ""
        sections.append(f"## {rid}\n\nSeverity: {rule.SEVERITY}. {summary}\n\n{body}\n{extra}")
    return HEADER + "\n".join(rows) + "\n\n" + "\n".join(sections)


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/rules.md")
    target.write_text(render_rules_md())
    print(f"wrote {target}")
