"""The linter: exact positions per finding, suppression, formats, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from gpuherd.lint.engine import LintOptions, lint_sources
from gpuherd.lint.model import Finding
from tests.conftest import gpuherd_argv

FIXTURES = Path(__file__).parent / "fixtures"

BAD = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: ollama, namespace: ai}
spec:
  template:
    spec:
      containers:
        - name: ollama
          image: ollama/ollama
          resources:
            requests: {nvidia.com/gpu: 1}
        - name: sidecar
          image: nvidia/cuda:12.4.1-base-ubuntu22.04
          env:
            - {name: NVIDIA_VISIBLE_DEVICES, value: all}
          resources:
            limits: {nvidia.com/gpu: 0.5}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: render}
spec:
  concurrencyPolicy: Forbid
  jobTemplate:
    spec:
      activeDeadlineSeconds: 3600
      template:
        spec:
          initContainers:
            - name: warm
              image: busybox
              resources:
                requests: {nvidia.com/gpu: "2"}
                limits: {nvidia.com/gpu: "1"}
          containers:
            - name: hide
              image: app
              resources: {limits: {nvidia.com/gpu: 0}}
"""


def lint(text: str, name: str = "m.yaml", **options: object) -> list[Finding]:
    return lint_sources([(name, text)], LintOptions(**options)).findings  # type: ignore[arg-type]


def brief(findings: list[Finding]) -> list[tuple[str, int, int, str, str]]:
    return [(f.rule, f.line, f.column, f.severity, f.object) for f in findings]


def test_exact_positions() -> None:
    assert brief(lint(BAD)) == [
        ("gpu-limits", 11, 24, "error", "Deployment/ai/ollama container=ollama"),
        ("visible-devices", 15, 53, "error", "Deployment/ai/ollama container=sidecar"),
        ("gpu-limits", 17, 38, "error", "Deployment/ai/ollama container=sidecar"),
        ("gpu-limits", 33, 44, "error", "CronJob/render initContainer=warm"),
        ("gpu-zero", 38, 52, "warning", "CronJob/render container=hide"),
    ]


def test_messages() -> None:
    findings = lint(BAD)
    assert (
        findings[0].message
        == "nvidia.com/gpu is requested but not limited: Kubernetes rejects the pod"
    )
    assert findings[1].message == (
        "NVIDIA_VISIBLE_DEVICES=all gives this container GPUs without a GPU "
        "request: the scheduler does not count them"
    )
    assert findings[3].message == (
        "nvidia.com/gpu request 2 differs from its limit 1: extended "
        "resources cannot be overcommitted"
    )


@pytest.mark.parametrize("fixture", ["clean-k3s-jellyfin.yaml", "clean-vllm.yaml"])
def test_clean_fixtures_have_no_findings(fixture: str) -> None:
    path = FIXTURES / fixture
    assert lint(path.read_text(), str(path)) == []


def test_list_and_select_ignore() -> None:
    listed = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [yaml_pod("a", "0.5"), yaml_pod("b", "1")],
    }
    findings = lint(json.dumps(listed))
    assert [(f.rule, f.object) for f in findings] == [("gpu-limits", "Pod/a container=c")]
    assert lint(BAD, select={"gpu-zero"})[0].rule == "gpu-zero"
    assert {f.rule for f in lint(BAD, ignore={"gpu-limits"})} == {"visible-devices", "gpu-zero"}


def yaml_pod(name: str, gpus: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [
                {"name": "c", "image": "x", "resources": {"limits": {"nvidia.com/gpu": gpus}}}
            ]
        },
    }


def test_suppression_by_comment_and_annotation() -> None:
    text = BAD.replace(
        "            requests: {nvidia.com/gpu: 1}",
        "            # gpuherd: ignore[gpu-limits]\n            requests: {nvidia.com/gpu: 1}",
    ).replace(
        "metadata: {name: render}",
        "metadata: {name: render, annotations: {gpuherd.io/ignore: 'gpu-zero,gpu-limits'}}",
    )
    assert [(f.rule, f.line) for f in lint(text)] == [("visible-devices", 16), ("gpu-limits", 18)]


def test_parse_error_is_a_finding_and_others_go_on() -> None:
    result = lint_sources([("bad.yaml", "a: [\n"), ("m.yaml", BAD)], LintOptions())
    assert result.files == 2
    first = result.findings[0]
    assert (first.rule, first.file, first.line, first.column) == ("parse-error", "bad.yaml", 2, 1)
    assert len(result.findings) == 6


def run(
    *args: str, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        gpuherd_argv("lint", *args),
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_cli_text_and_exit_codes(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(BAD)
    result = run(str(tmp_path))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"{tmp_path}/m.yaml:11:24: error gpu-limits nvidia.com/gpu is requested but not "
        "limited: Kubernetes rejects the pod [Deployment/ai/ollama container=ollama]"
    )
    assert lines[1] == "    fix: move it to limits: resources.limits.nvidia.com/gpu: 1"
    assert lines[-1] == "5 findings (4 errors, 1 warning) in 1 file"
    assert run(str(tmp_path), "--fail-on", "error", "--select", "gpu-zero").returncode == 0
    clean = run(str(FIXTURES / "clean-vllm.yaml"))
    assert (clean.returncode, clean.stdout.strip()) == (0, "0 findings in 1 file")


def test_cli_stdin_json_and_sarif() -> None:
    result = run("-", "--format", "json", stdin=BAD)
    data = json.loads(result.stdout)
    assert (data["version"], data["files"], len(data["findings"])) == (1, 1, 5)
    assert data["findings"][0] == {
        "rule": "gpu-limits",
        "severity": "error",
        "file": "<stdin>",
        "line": 11,
        "column": 24,
        "object": "Deployment/ai/ollama container=ollama",
        "message": "nvidia.com/gpu is requested but not limited: Kubernetes rejects the pod",
        "fix": "move it to limits: resources.limits.nvidia.com/gpu: 1",
    }
    sarif = json.loads(run("-", "--format", "sarif", stdin=BAD).stdout)
    assert sarif["version"] == "2.1.0"
    run0 = sarif["runs"][0]
    rules = {r["id"]: r for r in run0["tool"]["driver"]["rules"]}
    assert {"gpu-limits", "visible-devices", "gpu-zero", "parse-error"} <= set(rules)
    assert rules["gpu-limits"]["help"]["text"].startswith("GPU resources must be whole numbers")
    first = run0["results"][0]
    assert first["ruleId"] == "gpu-limits"
    assert first["level"] == "error"
    assert first["locations"][0]["physicalLocation"]["region"] == {
        "startLine": 11,
        "startColumn": 24,
    }
    assert run0["tool"]["driver"]["rules"][first["ruleIndex"]]["id"] == "gpu-limits"


def test_cli_config_file_found_upward(tmp_path: Path) -> None:
    (tmp_path / ".gpuherd-lint.yaml").write_text("ignore: [gpu-limits, visible-devices]\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "m.yaml").write_text(BAD)
    result = run(str(tmp_path / "sub" / "m.yaml"), "--format", "json")
    assert [f["rule"] for f in json.loads(result.stdout)["findings"]] == ["gpu-zero"]
    (tmp_path / ".gpuherd-lint.yaml").write_text("ignore: [no-such-rule]\n")
    bad = run(str(tmp_path / "sub"))
    assert bad.returncode == 2
    assert "unknown rule(s) no-such-rule" in bad.stderr


def test_cli_usage_errors(tmp_path: Path) -> None:
    assert run().returncode == 2
    assert run(str(tmp_path / "nope.yaml")).returncode == 2
    assert run(str(tmp_path), "--select", "bogus").returncode == 2
    assert run("--explain", "bogus").returncode == 2


def test_cli_list_and_explain() -> None:
    listed = run("--list-rules")
    assert listed.returncode == 0
    assert "gpu-limits" in listed.stdout
    assert "visible-devices" in listed.stdout
    explained = run("--explain", "gpu-zero")
    assert explained.returncode == 0
    assert "Why it matters" in explained.stdout
    assert "NVIDIA_VISIBLE_DEVICES=void" in explained.stdout


def test_a_failing_rule_becomes_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    from gpuherd.lint.rules import RULES, gpu_zero

    def broken(_ctx: object, _options: object) -> list[Finding]:
        raise KeyError("boom")

    monkeypatch.setattr(gpu_zero, "check", broken)
    assert RULES["gpu-zero"] is gpu_zero
    found = lint(BAD, select={"gpu-zero"})
    assert [(f.rule, f.object, f.message) for f in found] == [
        ("internal-error", "gpu-zero", "rule gpu-zero failed: KeyError: 'boom'")
    ]
