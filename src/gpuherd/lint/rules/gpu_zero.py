"""`nvidia.com/gpu: 0` does not hide GPUs.

What it does: finds GPU resources limited to 0.

Why it matters: a zero limit only means "no GPU allocated"; with nvidia as the default runtime
a CUDA image (NVIDIA_VISIBLE_DEVICES=all) still sees every GPU.

Example:
    resources: {limits: {nvidia.com/gpu: 0}}

Fix: drop the resource and set env NVIDIA_VISIBLE_DEVICES=void.
"""

from __future__ import annotations

from collections.abc import Iterator

from gpuherd.lint.model import Problem, Severity
from gpuherd.lint.rules.api import Options, RuleOptions
from gpuherd.lint.rules.base import LintContext, finding, is_gpu_resource, parse_count
from gpuherd.lint.sources.k8s import containers

ID = "gpu-zero"
SEVERITY: Severity = "warning"
OPTIONS: Options = {}


def check(ctx: LintContext, options: RuleOptions) -> Iterator[Problem]:
    for obj in ctx.objects:
        for c in containers(obj):
            for section in ("limits", "requests"):
                for name, value in c.resources(section).items():
                    if is_gpu_resource(str(name)) and parse_count(value) == 0:
                        hidden = c.env().get("NVIDIA_VISIBLE_DEVICES", ("",))[0]
                        if hidden in ("void", "none"):
                            continue
                        yield finding(
                            c,
                            c.value_pos("resources", section, name),
                            f"{name}: 0 does not hide GPUs: a CUDA image still sees them all "
                            "where nvidia is the default runtime",
                            "remove the resource and set env NVIDIA_VISIBLE_DEVICES=void",
                        )
