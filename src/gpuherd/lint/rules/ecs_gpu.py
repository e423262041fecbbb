"""ECS containers get GPUs through resourceRequirements, not device mappings or SYS_ADMIN.

What it does: for each container of a task definition: mapping /dev/nvidia* or using a CUDA
image without a GPU `resourceRequirements` is an error; a GPU on Fargate is an error; with a GPU
requirement, explicit /dev/nvidia* device mappings and `SYS_ADMIN` are unneeded privilege
(warnings); NVIDIA_DRIVER_CAPABILITIES missing video/graphics the image or command shows it
needs is a warning (ECS sets NVIDIA_VISIBLE_DEVICES but not the capabilities).

Why it matters: without resourceRequirements ECS does not reserve or inject the GPU, and the
renderer silently falls back to the CPU; Fargate has no GPUs; SYS_ADMIN is nearly root on the
instance (a Terraform module seen in the wild added both "for the GPU").

Example:
    "linuxParameters": {"capabilities": {"add": ["SYS_ADMIN"]},
                        "devices": [{"hostPath": "/dev/nvidia0"}]}

Fix: `"resourceRequirements": [{"type": "GPU", "value": "1"}]`, EC2 launch type with the ECS
GPU-optimized AMI, and drop the device mappings and SYS_ADMIN.
"""

from __future__ import annotations

from collections.abc import Iterator

from gpuherd.lint.model import Problem, Severity
from gpuherd.lint.rules.api import Options, RuleOptions
from gpuherd.lint.rules.base import LintContext, finding_at
from gpuherd.lint.sources.access import as_dict, as_list, dig
from gpuherd.lint.sources.ecs import TaskDef, gpu_count
from gpuherd.runtimecfg.nvenv import effective_capabilities, needs_from_text

ID = "ecs-gpu"
SEVERITY: Severity = "error"
OPTIONS: Options = {}


def _task_findings(task: TaskDef) -> Iterator[Problem]:
    def at(
        rel: tuple[str | int, ...],
        label: str,
        message: str,
        fix: str,
        severity: Severity | None = None,
    ) -> Problem:
        return finding_at(
            task.doc.source,
            task.value_pos(*rel),
            label=label,
            message=message,
            fix=fix,
            severity=severity,
        )

    compat = [str(c).upper() for c in as_list(task.data.get("requiresCompatibilities"))]
    for i, c in task.containers():
        label = f"{task.label} container={c.get('name', '?')}"
        here = ("containerDefinitions", i)
        gpus = gpu_count(c)
        linux = c.get("linuxParameters") if isinstance(c.get("linuxParameters"), dict) else {}
        devices = [
            (j, d)
            for j, d in enumerate(as_list(as_dict(linux).get("devices")))
            if isinstance(d, dict) and str(d.get("hostPath", "")).startswith("/dev/nvidia")
        ]
        image = str(c.get("image", ""))
        if gpus == 0 and (devices or "cuda" in image.lower()):
            why = "maps /dev/nvidia devices" if devices else f"uses a CUDA image ({image})"
            yield at(
                here,
                label,
                f"the container {why} but has no GPU resourceRequirements: ECS "
                "neither reserves nor injects a GPU",
                'add "resourceRequirements": [{"type": "GPU", "value": "1"}]',
            )
        if gpus and "FARGATE" in compat:
            yield at(
                ("requiresCompatibilities",),
                label,
                "Fargate has no GPUs: this task cannot be placed",
                "use the EC2 launch type with the ECS GPU-optimized AMI",
            )
        if gpus:
            for j, _dev in devices:
                yield at(
                    (*here, "linuxParameters", "devices", j),
                    label,
                    "explicit /dev/nvidia* mappings are not needed with resourceRequirements",
                    "remove the device mapping",
                    severity="warning",
                )
            caps = as_list(dig(linux, "capabilities", "add"))
            for j, cap in enumerate(caps if isinstance(caps, list) else []):
                if str(cap).upper().removeprefix("CAP_") == "SYS_ADMIN":
                    yield at(
                        (*here, "linuxParameters", "capabilities", "add", j),
                        label,
                        "SYS_ADMIN is not needed for a GPU and is close to root on the host",
                        "remove SYS_ADMIN",
                        severity="warning",
                    )
            env = {
                str(e.get("name")): (str(e.get("value")), k)
                for k, e in enumerate(as_list(c.get("environment")))
                if isinstance(e, dict)
            }
            value = env.get("NVIDIA_DRIVER_CAPABILITIES")
            have, _unknown = effective_capabilities(value[0] if value else None)
            text = " ".join(
                [
                    image,
                    *map(str, as_list(c.get("command"))),
                    *map(str, as_list(c.get("entryPoint"))),
                ]
            )
            missing = {
                cap: why
                for cap, why in needs_from_text(text).items()
                if cap in ("video", "graphics") and cap not in have
            }
            if missing:
                pos_rel = (*here, "environment", value[1], "value") if value else here
                reasons = ", ".join(f"{k} ({v!r})" for k, v in sorted(missing.items()))
                yield at(
                    pos_rel,
                    label,
                    f"NVIDIA_DRIVER_CAPABILITIES is "
                    f"{value[0] if value else 'unset (utility,compute)'} but the container "
                    f"needs {reasons}",
                    f"set NVIDIA_DRIVER_CAPABILITIES={','.join(sorted(have | set(missing)))}",
                    severity="warning",
                )


def check(ctx: LintContext, options: RuleOptions) -> Iterator[Problem]:
    for task in ctx.ecs_tasks:
        yield from _task_findings(task)
