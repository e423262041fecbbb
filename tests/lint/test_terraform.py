"""Terraform ECS task definitions: the HCL literal reader and seed 002's module."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuherd.lint.engine import LintOptions, lint_sources
from gpuherd.lint.sources.terraform import hcl_literal

SEED_002 = Path(__file__).parent / "fixtures" / "seed002-ecs.tf"


def test_seed_002_module() -> None:
    found = lint_sources([(str(SEED_002), SEED_002.read_text())], LintOptions()).findings
    assert sorted((f.rule, f.line, f.message.split(" ")[0]) for f in found) == [
        ("ecs-gpu", 9, "NVIDIA_DRIVER_CAPABILITIES"),
        ("ecs-gpu", 9, "SYS_ADMIN"),
        ("ecs-gpu", 9, "explicit"),
        ("ecs-gpu", 9, "explicit"),
        ("ecs-gpu", 9, "explicit"),
    ]
    assert {f.object for f in found} == {"TaskDefinition/render3mf container=renderer"}


def test_hcl_literals() -> None:
    assert hcl_literal('[{name = "a", n = 2, f = 1.5, ok = true, no = null, "q" : "x"}]') == [
        {"name": "a", "n": 2, "f": 1.5, "ok": True, "no": None, "q": "x"}
    ]
    assert hcl_literal('{image = "${var.repo}:latest"}') == {"image": "${var.repo}:latest"}
    assert hcl_literal("var.gpu ? [1] : []") == [1]
    assert hcl_literal('{env = concat(local.a, ["x"]), after = 1}') == {"env": None, "after": 1}
    with pytest.raises(ValueError, match="expected"):
        hcl_literal("[1, 2")


def test_unrelated_and_broken_terraform() -> None:
    other = 'resource "aws_s3_bucket" "b" {\n  bucket = "x"\n}\n'
    assert lint_sources([("s3.tf", other)], LintOptions()).findings == []
    broken = lint_sources([("bad.tf", 'resource "x" {\n  a = \n')], LintOptions()).findings
    assert [(f.rule, f.file) for f in broken] == [("parse-error", "bad.tf")]
    assert broken[0].line >= 2
