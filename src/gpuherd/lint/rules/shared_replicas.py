"""Asking for more than one time-sliced replica buys no extra GPU time.

What it does: flags requests of more than 1 for a time-sliced resource (one a sharing config in
the same project declares for the pod's nodes, or any `*.shared` resource). A ConfigMap with
one config per node group applies a key's config only to pods that select those nodes
(`nvidia.com/device-plugin.config`, or a Node in the input carrying it); where the pod's nodes
are unknown and some group does not share the resource, it stays silent.

Why it matters: the device plugin's documentation: requesting more than one shared GPU "does not
imply that you will get guaranteed access to a proportional amount of compute power"; CUDA gives
every process an equal time slice. With `failRequestsGreaterThanOne: true` such a pod fails
admission (UnexpectedAdmissionError).

Example:
    limits: {nvidia.com/gpu.shared: 2}       # "25% of the GPU" - it is not

Fix: request 1; to cap memory use per-app limits (vLLM --gpu-memory-utilization) or MPS.
"""

from __future__ import annotations

from collections.abc import Iterator

from gpuherd.lint.model import Problem, Severity
from gpuherd.lint.rules.api import Options, RuleOptions
from gpuherd.lint.rules.base import LintContext, finding, parse_count
from gpuherd.lint.rules.sharing import shared_resources
from gpuherd.lint.sources.k8s import containers

ID = "shared-replicas"
SEVERITY: Severity = "warning"
OPTIONS: Options = {}


def _evidence(ctx: LintContext, file: str, name: str) -> str:
    """Where the sharing config that shares `name` lives, when it is another file."""
    for config in ctx.plugin_configs:
        if (
            config.file != file
            and ctx.same_project(file, config.file)
            and name in config.shared_names().values()
        ):
            label = config.label if config.label != config.file else "device-plugin config"
            return f" ({label} in {config.file})"
    return ""


def check(ctx: LintContext, options: RuleOptions) -> Iterator[Problem]:
    for obj in ctx.objects:
        cs = containers(obj)
        # advertised name -> failRequestsGreaterThanOne
        shared = shared_resources(ctx, obj, "timeSlicing") if cs and ctx.plugin_configs else {}
        for c in cs:
            for name, value in c.resources("limits").items():
                count = parse_count(value)
                if count is None or count <= 1:
                    continue
                if name not in shared and not str(name).endswith(".shared"):
                    continue
                pos = c.value_pos("resources", "limits", name)
                where = _evidence(ctx, obj.doc.source, str(name))
                if shared.get(name, False):
                    yield finding(
                        c,
                        pos,
                        f"{name}: {count} with failRequestsGreaterThanOne: true: the pod fails "
                        f"admission (UnexpectedAdmissionError){where}",
                        f"request {name}: 1",
                        severity="error",
                    )
                else:
                    yield finding(
                        c,
                        pos,
                        f"{name}: {count} does not buy {count}x GPU time: time-slicing gives every "
                        f"process an equal share, whatever it requested{where}",
                        f"request {name}: 1 and set failRequestsGreaterThanOne: true",
                    )
