"""GPU resources must be whole numbers set in `limits` (requests, if given, equal to them).

What it does: checks every container's `nvidia.com/gpu`, `nvidia.com/gpu.shared` and
`nvidia.com/mig-*` resources.

Why it matters: Kubernetes rejects an extended resource that is only requested, requested
differently than limited, or fractional: the pod is never created, and a Deployment shows only
a ReplicaSet event. GPUs cannot be overcommitted or split by quantity.

Example:
    resources:
      requests: {nvidia.com/gpu: 1}        # no limit: rejected

Fix: put the GPU count in `limits` (requests may be left out; they default to the limit).
"""

from __future__ import annotations

from collections.abc import Iterator

from gpuherd.lint.model import Problem, Severity
from gpuherd.lint.rules.api import Options, RuleOptions
from gpuherd.lint.rules.base import LintContext, finding, is_gpu_resource, parse_count
from gpuherd.lint.sources.k8s import containers

ID = "gpu-limits"
SEVERITY: Severity = "error"
OPTIONS: Options = {}


def check(ctx: LintContext, options: RuleOptions) -> Iterator[Problem]:
    for obj in ctx.objects:
        for c in containers(obj):
            limits, requests = c.resources("limits"), c.resources("requests")
            for section, values in (("limits", limits), ("requests", requests)):
                for name, value in values.items():
                    if not is_gpu_resource(str(name)):
                        continue
                    if parse_count(value) is None:
                        yield finding(
                            c,
                            c.value_pos("resources", section, name),
                            f"{name}: {value!r} is not a whole number of devices",
                            f"use a whole number, e.g. {name}: 1 (fractions of a GPU need "
                            "time-slicing shares, MIG or HAMi's nvidia.com/gpumem)",
                        )
            for name, value in requests.items():
                if not is_gpu_resource(str(name)) or parse_count(value) is None:
                    continue
                if name not in limits:
                    yield finding(
                        c,
                        c.key_pos("resources", "requests", name),
                        f"{name} is requested but not limited: Kubernetes rejects the pod",
                        f"move it to limits: resources.limits.{name}: {value}",
                    )
                elif parse_count(limits[name]) is not None and parse_count(
                    limits[name]
                ) != parse_count(value):
                    yield finding(
                        c,
                        c.value_pos("resources", "requests", name),
                        f"{name} request {value} differs from its limit {limits[name]}: "
                        "extended resources cannot be overcommitted",
                        "make them equal, or drop the request (it defaults to the limit)",
                    )
