"""NVIDIA_VISIBLE_DEVICES must not hand out GPUs the pod did not request, and must parse.

What it does: checks literal `NVIDIA_VISIBLE_DEVICES` env entries of every container: a value
that grants GPUs without a GPU request is an error for applications; GPU infrastructure that
must see every GPU (device plugin, MPS control daemon, GFD, DCGM exporter, the GPU Operator's
validators, driver and toolkit containers: NVIDIA component images, DaemonSets mounting
`/var/lib/kubelet/device-plugins`, operator labels) is left alone. `all` beside a GPU limit is
a warning: with the plugin's envvar strategy it is pointless, with others it hands out every
GPU of the node.

Why it matters: with the nvidia runtime, `all`, indices or UUIDs in this variable give the
container GPUs directly, bypassing the device plugin: the scheduler does not count them, two
pods land on one GPU and run out of memory. Bad tokens make the runtime fail the container.

Example:
    env:
      - {name: NVIDIA_VISIBLE_DEVICES, value: all}   # and no nvidia.com/gpu limit

Fix: request the GPU in `resources.limits` and drop the variable (the device plugin sets it),
or set `void` to keep GPUs out.
"""

from __future__ import annotations

from collections.abc import Iterator

from gpuherd.lint.model import Problem, Severity
from gpuherd.lint.rules.api import Option, Options, RuleOptions, strings
from gpuherd.lint.rules.base import LintContext, finding, gpu_request
from gpuherd.lint.rules.infra import is_gpu_infrastructure
from gpuherd.lint.sources.k8s import containers
from gpuherd.runtimecfg.nvenv import grants_gpus, parse_visible

ID = "visible-devices"
SEVERITY: Severity = "error"
OPTIONS: Options = {
    "infrastructure_images": Option(
        [], "more image name parts that mark GPU infrastructure (your own device plugin, ...)"
    ),
}


def check(ctx: LintContext, options: RuleOptions) -> Iterator[Problem]:
    extra = strings(options["infrastructure_images"])
    for obj in ctx.objects:
        for c in containers(obj):
            entry = c.env().get("NVIDIA_VISIBLE_DEVICES")
            if entry is None:
                continue
            value, index = str(entry[0]), entry[1]
            pos = c.value_pos("env", index, "value")
            _tokens, error = parse_visible(value)
            if error is not None:
                yield finding(
                    c,
                    pos,
                    f"NVIDIA_VISIBLE_DEVICES={value}: {error}",
                    "use all, none, void, or a comma list of indices or UUIDs",
                )
            elif is_gpu_infrastructure(c) or any(
                part in str(c.data.get("image", "")) for part in extra
            ):
                continue
            elif value.strip().lower() == "all" and gpu_request(c) > 0:
                yield finding(
                    c,
                    pos,
                    f"NVIDIA_VISIBLE_DEVICES=all beside a GPU limit of {gpu_request(c)}: "
                    "pointless where the device plugin sets the variable, and it hands out every "
                    "GPU of the node where the plugin passes devices another way",
                    "remove the variable: the device plugin chooses the GPUs",
                    severity="warning",
                )
            elif grants_gpus(value) and gpu_request(c) == 0:
                yield finding(
                    c,
                    pos,
                    f"NVIDIA_VISIBLE_DEVICES={value} gives this container GPUs without a GPU "
                    "request: the scheduler does not count them",
                    "request nvidia.com/gpu in resources.limits and remove the variable, or "
                    "set it to void",
                )
