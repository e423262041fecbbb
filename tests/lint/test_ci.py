"""What users wire around the linter: the pre-commit hook, the CI recipe, SARIF that validates."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tests.lint.test_lint import BAD, FIXTURES, run

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((Path(__file__).parent / "sarif-schema-2.1.0.json").read_text())


def validate_sarif(text: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(text)
    validator = jsonschema.validators.validator_for(SCHEMA)
    validator.check_schema(SCHEMA)
    errors = sorted(validator(SCHEMA).iter_errors(data), key=lambda e: list(e.path))
    assert errors == [], [f"{list(e.path)}: {e.message}" for e in errors[:5]]
    return data


def project(tmp_path: Path) -> Path:
    (tmp_path / "m.yaml").write_text(BAD)
    (tmp_path / "broken.yaml").write_text("a: [\n")
    (tmp_path / "compose.yaml").write_text((FIXTURES / "clean-compose.yaml").read_text())
    return tmp_path


def test_sarif_validates_against_the_2_1_0_schema(tmp_path: Path) -> None:
    result = run(str(project(tmp_path)), "--format", "sarif")
    data = validate_sarif(result.stdout)
    rules = {r["ruleId"] for r in data["runs"][0]["results"]}
    assert {"gpu-limits", "parse-error", "visible-devices", "gpu-zero"} <= rules
    empty = run(str(FIXTURES / "clean-vllm.yaml"), "--format", "sarif")
    assert validate_sarif(empty.stdout)["runs"][0]["results"] == []


def test_the_schema_check_can_fail() -> None:
    bad = json.loads(run("-", "--format", "sarif", stdin=BAD).stdout)
    bad["runs"][0]["results"][0]["level"] = "fatal"
    validator = jsonschema.validators.validator_for(SCHEMA)(SCHEMA)
    assert not validator.is_valid(bad)


def _hook() -> dict[str, Any]:
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    (hook,) = [h for h in hooks if h["id"] == "gpuherd-lint"]
    return dict(hook)


def test_pre_commit_hook_entry_runs(tmp_path: Path) -> None:
    hook = _hook()
    assert hook["language"] == "python"
    files = re.compile(hook["files"])
    for name in ("k8s/app.yaml", "x.yml", "task.json", "main.tf", "ecs.config", "config.toml.tmpl"):
        assert files.search(name), name
    assert not files.search("README.md")
    entry = shlex.split(hook["entry"])
    exe = Path(sys.executable).parent / entry[0]  # the console script pip installs
    assert exe.is_file(), f"{exe}: gpuherd is not installed in this environment"
    bad = project(tmp_path) / "m.yaml"
    failed = subprocess.run(
        [str(exe), *entry[1:], str(bad)], capture_output=True, text=True, check=False
    )
    assert failed.returncode == 1
    assert f"{bad}:11:24: error gpu-limits" in failed.stdout
    clean = subprocess.run(
        [str(exe), *entry[1:], str(FIXTURES / "clean-vllm.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (clean.returncode, clean.stderr) == (0, "")


def _workflow() -> dict[str, Any]:
    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "docs" / "ci.md").read_text(), re.S)
    (workflow,) = [b for b in map(yaml.safe_load, blocks) if "jobs" in b]
    return dict(workflow)


def test_ci_recipe_lint_step_writes_what_upload_reads(tmp_path: Path) -> None:
    steps = _workflow()["jobs"]["gpuherd-lint"]["steps"]
    (lint_step,) = [s for s in steps if s.get("name") == "gpuherd lint"]
    (upload,) = [s for s in steps if str(s.get("uses", "")).startswith("github/codeql-action")]
    assert upload["uses"].endswith("upload-sarif@v3")
    assert upload["if"] == "always()"
    command, _, target = lint_step["run"].partition(">")
    assert target.strip() == upload["with"]["sarif_file"]
    argv = shlex.split(command)
    assert argv[:2] == ["gpuherd", "lint"]
    # Run the recipe's command on a project of ours in place of deploy/.
    argv = [sys.executable, "-m", "gpuherd", *argv[1:]]
    argv[argv.index("deploy/")] = str(project(tmp_path))
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert result.returncode == 1
    validate_sarif(result.stdout)
