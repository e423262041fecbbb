"""The rule API: the engine stamps id and severity, options from .gpuherd-lint.yaml, overrides,
statistics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gpuherd.lint.config import LintConfigError, load_lint_config
from gpuherd.lint.engine import LintOptions, lint_sources
from gpuherd.lint.rules import RULES
from tests.lint.test_lint import BAD, run

RULES_DIR = Path(__file__).resolve().parents[2] / "src" / "gpuherd" / "lint" / "rules"

JOB = """\
apiVersion: batch/v1
kind: Job
metadata: {name: train}
spec:
  template:
    spec:
      containers: [{name: t, image: x, resources: {limits: {nvidia.com/gpu: 1}}}]
"""


def test_rules_do_not_name_themselves_in_findings() -> None:
    for path in RULES_DIR.glob("*.py"):
        text = path.read_text()
        assert "sys.modules[__name__]" not in text, path.name
        assert not re.search(r"\brule=", text), path.name  # the engine stamps the id


def test_engine_stamps_id_and_default_severity() -> None:
    found = lint_sources([("m.yaml", BAD)], LintOptions(select={"gpu-zero"})).findings
    assert [(f.rule, f.severity) for f in found] == [("gpu-zero", RULES["gpu-zero"].SEVERITY)]


def test_option_from_config_file(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text(JOB)
    assert run(str(tmp_path), "--select", "gpu-job-bounds").returncode == 0
    (tmp_path / ".gpuherd-lint.yaml").write_text(
        "rules:\n  gpu-job-bounds: {require_backoff_limit: true, severity: error}\n"
    )
    result = run(str(tmp_path), "--select", "gpu-job-bounds", "--format", "json")
    findings = json.loads(result.stdout)["findings"]
    assert [(f["rule"], f["severity"], f["line"]) for f in findings] == [
        ("gpu-job-bounds", "error", 5)
    ]
    assert result.returncode == 1


def test_bad_options_name_file_line_and_field(tmp_path: Path) -> None:
    config = tmp_path / ".gpuherd-lint.yaml"
    for text, message in (
        ("rules:\n  gpu-job-bounds: {nope: 1}\n", ":2:20: gpu-job-bounds has no option 'nope'"),
        (
            "rules:\n  gpu-job-bounds:\n    require_backoff_limit: yes please\n",
            ":3:5: gpu-job-bounds.require_backoff_limit must be a boolean",
        ),
        ("rules:\n  no-such-rule: {}\n", ":2:3: unknown rule 'no-such-rule'"),
        ("rules:\n  gpu-zero: {severity: fatal}\n", ":2:14: severity must be error"),
    ):
        config.write_text(text)
        with pytest.raises(LintConfigError, match=re.escape(f"{config}{message}")):
            load_lint_config(config, RULES)
        result = run(str(tmp_path))
        assert result.returncode == 2
        assert "Traceback" not in result.stderr


def test_severity_override(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(BAD)
    result = run(
        str(tmp_path),
        "--format",
        "json",
        "--severity-override",
        "gpu-limits=info",
        "--severity-override",
        "gpu-zero=error",
    )
    severities = {(f["rule"], f["severity"]) for f in json.loads(result.stdout)["findings"]}
    assert severities == {
        ("gpu-limits", "info"),
        ("gpu-zero", "error"),
        ("visible-devices", "error"),
    }
    quiet = run(
        str(tmp_path),
        "--fail-on",
        "error",
        "--severity-override",
        "gpu-limits=info",
        "--severity-override",
        "visible-devices=warning",
    )
    assert quiet.returncode == 0
    for bad in ("gpu-limits", "nope=info", "gpu-limits=fatal"):
        wrong = run(str(tmp_path), "--severity-override", bad)
        assert wrong.returncode == 2
        assert "--severity-override" in wrong.stderr


def test_statistics(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(BAD)
    text = run(str(tmp_path), "--statistics")
    assert text.returncode == 1
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["count", "rule", "severity"]
    assert lines[1].split() == ["3", "gpu-limits", "error"]
    assert lines[-1].split() == ["5", "total", "in", "1", "file"]
    data = json.loads(run(str(tmp_path), "--statistics", "--format", "json").stdout)
    assert data["total"] == 5
    assert data["statistics"][0] == {"rule": "gpu-limits", "severity": "error", "count": 3}
    assert sum(row["count"] for row in data["statistics"]) == 5
    assert run(str(tmp_path), "--statistics", "--format", "sarif").returncode == 2


def test_explain_lists_options() -> None:
    explained = run("--explain", "gpu-job-bounds")
    assert "require_backoff_limit" in explained.stdout
