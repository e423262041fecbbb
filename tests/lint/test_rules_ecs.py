"""ECS task definitions and agent config: seed 002's definition, Fargate, user data."""

from __future__ import annotations

import json
from pathlib import Path

from gpuherd.lint.engine import LintOptions, discover, lint_sources
from gpuherd.lint.model import Finding

FIXTURES = Path(__file__).parent / "fixtures"
SEED_002 = (FIXTURES / "seed002-taskdef.json").read_text()


def lint(*files: tuple[str, str]) -> list[Finding]:
    return lint_sources(list(files), LintOptions()).findings


def test_seed_002_unneeded_privilege_and_missing_graphics() -> None:
    found = lint(("task.json", SEED_002))
    assert [(f.rule, f.line, f.column, f.severity, f.message) for f in found] == [
        (
            "ecs-gpu",
            6,
            5,
            "warning",
            "NVIDIA_DRIVER_CAPABILITIES is unset (utility,compute) but the "
            "container needs graphics ('blender')",
        ),
        (
            "ecs-gpu",
            12,
            34,
            "warning",
            "SYS_ADMIN is not needed for a GPU and is close to root on the host",
        ),
        (
            "ecs-gpu",
            14,
            11,
            "warning",
            "explicit /dev/nvidia* mappings are not needed with resourceRequirements",
        ),
        (
            "ecs-gpu",
            15,
            11,
            "warning",
            "explicit /dev/nvidia* mappings are not needed with resourceRequirements",
        ),
    ]
    assert found[0].object == "TaskDefinition/render3mf container=renderer"


def test_device_mapping_without_gpu_requirement_and_fargate() -> None:
    data = json.loads(SEED_002)
    del data["containerDefinitions"][0]["resourceRequirements"]
    found = lint(("task.json", json.dumps(data, indent=2)))
    assert [f.message for f in found] == [
        "the container maps /dev/nvidia devices but has no GPU resourceRequirements: ECS neither "
        "reserves nor injects a GPU"
    ]
    fargate = json.loads(SEED_002)
    fargate["requiresCompatibilities"] = ["FARGATE"]
    messages = [f.message for f in lint(("task.json", json.dumps(fargate, indent=2)))]
    assert "Fargate has no GPUs: this task cannot be placed" in messages


def test_clean_describe_output() -> None:
    path = FIXTURES / "clean-ecs-taskdef.json"
    assert lint((str(path), path.read_text())) == []


def test_agent_config_in_user_data(tmp_path: Path) -> None:
    user_data = "#!/bin/bash\necho ECS_CLUSTER=render >> /etc/ecs/ecs.config\n"
    found = lint(("task.json", SEED_002), ("user-data.sh", user_data))
    agent = [f for f in found if f.rule == "ecs-agent"]
    assert [(f.file, f.line, f.message) for f in agent] == [
        (
            "user-data.sh",
            2,
            "ECS_ENABLE_GPU_SUPPORT is not set while TaskDefinition/render3mf "
            "(task.json) needs a GPU: the agent registers no GPUs",
        )
    ]
    fixed = user_data + "echo ECS_ENABLE_GPU_SUPPORT=true >> /etc/ecs/ecs.config\n"
    assert [
        f for f in lint(("task.json", SEED_002), ("user-data.sh", fixed)) if f.rule == "ecs-agent"
    ] == []
    off = lint(
        ("task.json", SEED_002), ("ecs.config", "ECS_CLUSTER=x\nECS_ENABLE_GPU_SUPPORT=false\n")
    )
    assert [(f.line, f.message.split(" while")[0]) for f in off if f.rule == "ecs-agent"] == [
        (2, "ECS_ENABLE_GPU_SUPPORT is false")
    ]
    # Directory discovery picks the agent config up by name.
    (tmp_path / "ecs.config").write_text("ECS_CLUSTER=x\n")
    (tmp_path / "notes.txt").write_text("ECS_ENABLE_GPU_SUPPORT=true\n")
    assert [p.name for p in discover([tmp_path])] == ["ecs.config"]
