"""Emitted configs: what is written, and that `gpuherd lint` accepts every file as it is."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import date
from pathlib import Path

import pytest
import yaml

from gpuherd.lint.engine import LintOptions, lint_sources
from gpuherd.plan.emit import Sharing, emit, write
from gpuherd.plan.report import make_plan
from gpuherd.spec import parse_config
from tests.conftest import gpuherd_argv

ROOT = Path(__file__).resolve().parents[2]
HOMELAB = (ROOT / "examples" / "homelab.yaml").read_text()


def emitted_for(text: str, sharing: Sharing) -> dict[str, str]:
    config = parse_config(text, source="h.yaml")
    plan = make_plan(config, week_start=date(2026, 11, 23))
    return {
        e.path: e.text
        for e in emit(config, plan, ["device-plugin", "k8s", "vllm", "ollama"], sharing)
    }


@pytest.mark.parametrize("sharing", ["shared", "hami", "kai"])
def test_emitted_yaml_passes_lint(sharing: Sharing) -> None:
    files = emitted_for(HOMELAB, sharing)
    result = lint_sources(sorted(files.items()), LintOptions())
    assert result.findings == []


def test_mixed_sharing_gets_per_node_configs_and_a_default() -> None:
    files = emitted_for(HOMELAB, "shared")
    assert sorted(files) == [
        "device-plugin-configmap.yaml",
        "ollama.yaml",
        "tenants-shared.yaml",
        "vllm.yaml",
    ]
    configmap = yaml.safe_load(files["device-plugin-configmap.yaml"])
    assert sorted(configmap["data"]) == ["default", "replicas-8"]
    inner = yaml.safe_load(configmap["data"]["replicas-8"])
    assert inner["sharing"]["timeSlicing"] == {
        "renameByDefault": True,
        "failRequestsGreaterThanOne": True,
        "resources": [{"name": "nvidia.com/gpu", "replicas": 8}],
    }
    tenants = {d["metadata"]["name"]: d for d in yaml.safe_load_all(files["tenants-shared.yaml"])}
    limits = {
        n: d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
        for n, d in tenants.items()
    }
    assert limits["vllm"] == {"nvidia.com/gpu.shared": 1}
    assert limits["ollama-ada"] == {"nvidia.com/gpu": 1}  # the Ada node is not shared
    assert yaml.safe_load(files["vllm.yaml"]) == {
        "tenant": "vllm",
        "gpu_memory_utilization": 0.29,
        "args": ["--gpu-memory-utilization", "0.29"],
    }


def test_uniform_sharing_gets_one_standalone_config() -> None:
    text = "version: 1\ngpus: [{name: g, node: n, memory: 12GiB, shares: 4}]\ntenants: {a: {gpu: g, vram: 2GiB}}\n"
    files = emitted_for(text, "shared")
    assert "device-plugin-config.yaml" in files
    assert sorted(yaml.safe_load(files["device-plugin-configmap.yaml"])["data"]) == ["replicas-4"]


def test_hami_and_kai_request_memory_their_way() -> None:
    hami = next(yaml.safe_load_all(emitted_for(HOMELAB, "hami")["tenants-hami.yaml"]))
    assert hami["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {
        "nvidia.com/gpu": 1,
        "nvidia.com/gpumem": 2048,
    }
    kai = next(yaml.safe_load_all(emitted_for(HOMELAB, "kai")["tenants-kai.yaml"]))
    assert kai["spec"]["template"]["metadata"]["annotations"]["gpu-memory"] == "2048"


def test_write_is_all_or_nothing(tmp_path: Path) -> None:
    config = parse_config(HOMELAB, source="h.yaml")
    plan = make_plan(config, week_start=date(2026, 11, 23))
    write(emit(config, plan, ["vllm"], "shared"), tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["vllm.yaml"]


def test_cli_emit(tmp_path: Path) -> None:
    cfg = tmp_path / "gpuherd.yaml"
    cfg.write_text(HOMELAB)
    out = tmp_path / "emitted"
    result = subprocess.run(
        gpuherd_argv(
            "plan",
            "-c",
            str(cfg),
            "--format",
            "json",
            "--emit",
            "device-plugin,vllm",
            "--out",
            str(out),
        ),
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ},
    )
    assert result.returncode == 1  # the homelab does not fit; emission still happens
    assert json.loads(result.stdout)["emitted"] == [
        {"path": str(out / "device-plugin-configmap.yaml"), "kind": "configmap"},
        {"path": str(out / "vllm.yaml"), "kind": "vllm"},
    ]
    bad = subprocess.run(
        gpuherd_argv("plan", "-c", str(cfg), "--emit", "helm"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert "--emit: unknown helm" in bad.stderr
