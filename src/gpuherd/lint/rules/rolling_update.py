"""A Deployment holding a whole GPU should use `strategy: Recreate`.

What it does: flags Deployments whose pods limit whole GPUs (nvidia.com/gpu or MIG) and whose
strategy is RollingUpdate (the default) with a surge above 0 (the default 25% rounds up to one
pod). Shared GPUs are not whole: resources a time-slicing or MPS config in the same project
replicates for the pod's nodes, HAMi vGPU slices (`nvidia.com/gpumem`,
`nvidia.com/gpumem-percentage`, `nvidia.com/gpucores`) and KAI `gpu-fraction` annotations.

Why it matters: on a node with no spare GPU the new pod waits for the GPU the old pod holds,
and the old pod is only removed when the new one is ready: the rollout deadlocks.

Example:
    kind: Deployment     # no strategy, limits: {nvidia.com/gpu: 1}

Fix: `strategy: {type: Recreate}` (or RollingUpdate with maxSurge: 0 and maxUnavailable: 1).
"""

from __future__ import annotations

from collections.abc import Iterator

from gpuherd.lint.model import Problem, Severity
from gpuherd.lint.rules.api import Options, RuleOptions
from gpuherd.lint.rules.base import LintContext, finding, parse_count
from gpuherd.lint.rules.sharing import fractional, shared_resources
from gpuherd.lint.sources.access import as_dict
from gpuherd.lint.sources.k8s import containers

ID = "rolling-update"
SEVERITY: Severity = "warning"
OPTIONS: Options = {}


def check(ctx: LintContext, options: RuleOptions) -> Iterator[Problem]:
    for obj in ctx.objects:
        if obj.kind != "Deployment" or fractional(obj):
            continue
        shared = shared_resources(ctx, obj) if ctx.plugin_configs else {}
        whole = sum(
            parse_count(value) or 0
            for c in containers(obj)
            if not c.init
            for name, value in c.resources("limits").items()
            if (name == "nvidia.com/gpu" or str(name).startswith("nvidia.com/mig-"))
            and name not in shared
        )
        if whole == 0:
            continue
        spec = as_dict(obj.data.get("spec"))
        raw = spec.get("strategy")
        strategy: dict[str, object] = raw if isinstance(raw, dict) else {}
        if strategy.get("type", "RollingUpdate") != "RollingUpdate":
            continue
        rolling = strategy.get("rollingUpdate")
        surge = rolling.get("maxSurge", "25%") if isinstance(rolling, dict) else "25%"
        if str(surge) in ("0", "0%"):
            continue
        pos = obj.value_pos("spec", "strategy") if "strategy" in spec else obj.start()
        yield finding(
            obj,
            pos,
            f"RollingUpdate with maxSurge {surge} on a whole-GPU Deployment: the new pod waits "
            "for the GPU the old pod holds and the rollout deadlocks",
            "set strategy: {type: Recreate}",
        )
