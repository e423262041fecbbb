"""The ECS agent must have GPU support on when GPU task definitions target it.

What it does: when a project holds a GPU task definition and an ECS agent config (`ecs.config`,
a user-data script writing `/etc/ecs/ecs.config`, or Terraform user data doing so), requires
`ECS_ENABLE_GPU_SUPPORT=true`, unless the project's Terraform launches the ECS GPU-optimized AMI
(an `aws_ami` filter such as `amzn2-ami-ecs-gpu-hvm-*`, or an SSM parameter path with `/gpu/`):
that AMI already sets it in `/var/lib/ecs/ecs.config`, which the agent reads first.

Why it matters: without it the agent registers no GPUs and GPU tasks are never placed on the
instance.

Example:
    echo ECS_CLUSTER=render >> /etc/ecs/ecs.config     # and nothing else

Fix: `echo ECS_ENABLE_GPU_SUPPORT=true >> /etc/ecs/ecs.config`, on the ECS GPU-optimized AMI.
"""

from __future__ import annotations

from collections.abc import Iterator

from gpuherd.lint.model import Problem, Severity
from gpuherd.lint.rules.api import Options, RuleOptions
from gpuherd.lint.rules.base import LintContext, finding_at
from gpuherd.lint.sources.ecs import gpu_count
from gpuherd.yamlpos import Pos

ID = "ecs-agent"
SEVERITY: Severity = "error"
OPTIONS: Options = {}


def check(ctx: LintContext, options: RuleOptions) -> Iterator[Problem]:
    gpu_tasks = [t for t in ctx.ecs_tasks if any(gpu_count(c) for _i, c in t.containers())]
    if not gpu_tasks:
        return
    for agent in ctx.ecs_agents:
        value, line = agent.settings.get("ECS_ENABLE_GPU_SUPPORT", ("", 0))
        if value.lower() == "true":
            continue
        tasks = [t for t in gpu_tasks if ctx.same_project(agent.file, t.doc.source)]
        if not tasks or (
            not value and any(ctx.same_project(agent.file, f) for f in ctx.gpu_ami_files)
        ):
            continue
        pos = Pos(line or agent.line, 1)
        yield finding_at(
            agent.file,
            pos,
            label="ecs.config",
            message=f"ECS_ENABLE_GPU_SUPPORT is {value or 'not set'} while {tasks[0].label} "
            f"({tasks[0].doc.source}) needs a GPU: the agent registers no GPUs",
            fix="echo ECS_ENABLE_GPU_SUPPORT=true >> /etc/ecs/ecs.config",
        )
