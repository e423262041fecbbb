"""docs/rules.md matches the rule docstrings, and every rule documents what the issue asks."""

from pathlib import Path

import pytest

from gpuherd.lint.docs import render_rules_md
from gpuherd.lint.rules import RULES

DOC = Path(__file__).resolve().parents[2] / "docs" / "rules.md"


def test_rules_md_is_current() -> None:
    assert DOC.read_text() == render_rules_md(), "docs/rules.md is stale: run `make docs`"


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_rule_docstring_sections(rule_id: str) -> None:
    doc = RULES[rule_id].__doc__ or ""
    for section in ("What it does:", "Why it matters:", "Example:", "Fix:"):
        assert section in doc, f"{rule_id} lacks '{section}'"
    assert RULES[rule_id].SEVERITY in ("error", "warning", "info")
