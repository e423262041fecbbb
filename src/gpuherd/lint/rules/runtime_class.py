"""GPU pods need `runtimeClassName: nvidia` where nvidia is not the default runtime.

What it does: under the k3s and microk8s profiles (or any input that defines a RuntimeClass
whose handler is nvidia), flags GPU pods without `runtimeClassName`, and references to
RuntimeClasses that are neither in the input nor created by the distribution.

Why it matters: without the nvidia runtime the container starts with no driver libraries and
no device nodes: CUDA reports no GPU and renderers fall back to the CPU, silently.

Example:
    spec:
      containers: [{name: app, resources: {limits: {nvidia.com/gpu: 1}}}]   # no runtimeClassName

Fix: add `runtimeClassName: nvidia` to the pod spec.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

from gpuherd.lint.model import Finding
from gpuherd.lint.rules.base import LintContext, finding, pod_gpus

ID = "runtime-class"
SEVERITY = "warning"
_rule = sys.modules[__name__]

# RuntimeClasses the distribution creates itself.
PROFILE_CLASSES = {
    "k3s": {"nvidia", "nvidia-experimental", "nvidia-cdi"},
    "microk8s": {"nvidia"},
}


def check(ctx: LintContext) -> Iterator[Finding]:
    declared = {o.name: o for o in ctx.objects if o.kind == "RuntimeClass"}
    nvidia_classes = {n for n, o in declared.items() if "nvidia" in str(o.data.get("handler", ""))}
    known = set(declared) | PROFILE_CLASSES.get(ctx.profile, set())
    required = ctx.profile in PROFILE_CLASSES or bool(nvidia_classes)
    for obj in ctx.objects:
        found = obj.pod_spec()
        if found is None or pod_gpus(obj) == 0:
            continue
        path, spec = found
        name = spec.get("runtimeClassName")
        if name is None:
            if required:
                suggestion = sorted(nvidia_classes)[0] if nvidia_classes else "nvidia"
                why = (
                    f"the {ctx.profile} profile does not make nvidia the default runtime"
                    if ctx.profile in PROFILE_CLASSES
                    else f"RuntimeClass {suggestion} in the input shows nvidia is not default"
                )
                yield finding(
                    _rule,
                    obj,
                    obj.value_pos(*path),
                    f"GPU pod without runtimeClassName ({why}): it starts without the "
                    "GPU and falls back to the CPU",
                    f"add runtimeClassName: {suggestion}",
                )
        elif known and str(name) not in known:
            yield finding(
                _rule,
                obj,
                obj.value_pos(*path, "runtimeClassName"),
                f"RuntimeClass {name!r} is not in the input and not created by "
                f"{ctx.profile}: the pod is rejected",
                f"use one of: {', '.join(sorted(known))}",
            )
