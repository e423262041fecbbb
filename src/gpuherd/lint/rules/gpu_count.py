"""A pod must not ask for more GPUs than any node has.

What it does: adds up a pod's GPU limits (containers together; init containers one at a time)
and compares them with the largest GPU count of the Nodes in the input (status capacity or
allocatable), or `--max-gpus-per-node`.

Why it matters: such a pod stays Pending forever with "Insufficient nvidia.com/gpu".

Example:
    limits: {nvidia.com/gpu: 2}     # every node has 1 GPU

Fix: lower the request, or add a node with more GPUs (time-slicing shares count as GPUs).
"""

from __future__ import annotations

from collections.abc import Iterator

from gpuherd.lint.model import Problem, Severity
from gpuherd.lint.rules.api import Options, RuleOptions
from gpuherd.lint.rules.base import LintContext, finding, node_gpu_count, pod_gpus

ID = "gpu-count"
SEVERITY: Severity = "error"
OPTIONS: Options = {}


def check(ctx: LintContext, options: RuleOptions) -> Iterator[Problem]:
    all_nodes = ctx.of_kind("Node")
    for obj in ctx.objects:
        wanted = pod_gpus(obj)
        if not wanted:
            continue
        nodes = [
            node_gpu_count(n) for n in all_nodes if ctx.same_project(obj.doc.source, n.doc.source)
        ]
        limit = max(nodes) if nodes else ctx.max_gpus_per_node
        source = "any Node in the input" if nodes else "--max-gpus-per-node"
        if limit is not None and wanted > limit:
            spec = obj.pod_spec()
            pos = obj.value_pos(*spec[0]) if spec else obj.start()
            yield finding(
                obj,
                pos,
                f"the pod needs {wanted} GPUs at once; {source} has at most {limit}: "
                "it stays Pending",
                f"ask for at most {limit}",
            )
