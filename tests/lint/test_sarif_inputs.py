"""SARIF names a rule for every finding the engine itself makes, not only the rules'."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jsonschema

from tests.conftest import gpuherd_argv

SCHEMA = Path(__file__).parent / "sarif-schema-2.1.0.json"


def test_an_unreadable_file_is_a_sarif_result_with_its_rule(tmp_path: Path) -> None:
    (tmp_path / "ok.yaml").write_text("a: 1\n")
    (tmp_path / "bad.yaml").symlink_to("/proc/self/mem")  # opens, then every read fails
    result = subprocess.run(
        gpuherd_argv("lint", str(tmp_path), "--format", "sarif"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    log = json.loads(result.stdout)
    jsonschema.validate(log, json.loads(SCHEMA.read_text()))
    run = log["runs"][0]
    [found] = run["results"]
    assert run["tool"]["driver"]["rules"][found["ruleIndex"]]["id"] == "unreadable"
