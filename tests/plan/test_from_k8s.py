"""plan --from-k8s: tenants and GPUs derived from manifests, alone or with a config file."""

from __future__ import annotations

import json
import subprocess
from datetime import date
from pathlib import Path

import pytest

from gpuherd.plan.k8s_input import ManifestError, merged_config, read_manifests
from gpuherd.plan.report import make_plan, plan_dict
from gpuherd.spec import Config, parse_config
from gpuherd.spec.from_k8s import gpus_from_nodes, parse_active, tenants_from_manifests
from tests.conftest import gpuherd_argv

FIXTURE = Path(__file__).parent / "fixtures" / "cluster.yaml"
GIB = 1024**3


def test_derived_gpus_and_tenants() -> None:
    docs = read_manifests([FIXTURE])
    gpus = gpus_from_nodes(docs)
    assert gpus == [
        {
            "name": "homelabai",
            "node": "homelabai",
            "index": 0,
            "model": "NVIDIA-GeForce-RTX-3080-Ti-SHARED",
            "memory": 12 * GIB,
            "shares": 8,
        }
    ]
    tenants = tenants_from_manifests(docs, {"homelabai": "homelabai"})
    assert tenants == {
        "vllm-server": {
            "vram": {"fraction": 0.7},
            "priority": 40,
            "app": "vllm",
            "active": [{"cron": "0 8 * * 1-5", "for": "10h"}],
            "gpu": "homelabai",
        },
        "ollama": {"vram": 4 * GIB, "priority": 10, "active": "always", "gpu": "homelabai"},
        "whisper": {"vram": 3072 * 1024**2, "priority": 0, "active": "always", "gpu": "homelabai"},
    }


def test_plan_from_manifests_alone() -> None:
    config = Config.model_validate(merged_config(None, read_manifests([FIXTURE])))
    g = plan_dict(make_plan(config, week_start=date(2026, 11, 23)))["gpus"][0]
    assert (g["verdict"], g["peak_bytes"]) == ("over", 7 * GIB + int(12 * GIB * 0.7))


def test_config_file_tenants_win_and_supply_gpus() -> None:
    base = parse_config(
        "version: 1\ngpus: [{name: g, node: homelabai, memory: 24GiB}]\n"
        "tenants: {ollama: {gpu: g, vram: 1GiB}}\n",
        source="b.yaml",
    )
    config = Config.model_validate(merged_config(base, read_manifests([FIXTURE])))
    assert [g.name for g in config.gpus or []] == ["g"]
    assert config.tenants["ollama"].vram.typical.bytes == GIB  # type: ignore[index]
    assert config.tenants["whisper"].gpu == "g"  # type: ignore[index]


def test_active_annotation_forms() -> None:
    assert parse_active("always") == "always"
    assert parse_active("0 18 * * * for 5h; 0 8 * * 1-5 for 10h") == [
        {"cron": "0 18 * * *", "for": "5h"},
        {"cron": "0 8 * * 1-5", "for": "10h"},
    ]
    with pytest.raises(ValueError, match="expected 'CRON for DURATION'"):
        parse_active("evenings")


def test_bad_manifest_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [\n")
    with pytest.raises(ManifestError, match=r"bad\.yaml:2:1"):
        read_manifests([bad])


def test_cli_from_k8s() -> None:
    result = subprocess.run(
        gpuherd_argv("plan", "--from-k8s", str(FIXTURE), "--format", "json"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["gpus"][0]["name"] == "homelabai"
