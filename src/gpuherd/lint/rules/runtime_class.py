"""GPU pods need `runtimeClassName: nvidia` where nvidia is not the default runtime.

What it does: decides whether nvidia is containerd's default runtime from a containerd (or k3s
`config.toml.tmpl`) config in the same project, else from the profile (k3s and microk8s keep
runc the default); where it is not, flags GPU pods without `runtimeClassName`. A
`default_runtime_name = "nvidia"` in the input overrides the profile. RuntimeClass objects alone
prove nothing (the GPU Operator creates `nvidia`, `nvidia-cdi` and `nvidia-legacy` for its own
pods while workloads get GPUs through CDI or the default runtime); when the input holds
RuntimeClasses, a pod naming one that is neither there nor created by the distribution is
flagged.

Why it matters: without the nvidia runtime the container starts with no driver libraries and
no device nodes: CUDA reports no GPU and renderers fall back to the CPU, silently.

Example:
    spec:
      containers: [{name: app, resources: {limits: {nvidia.com/gpu: 1}}}]   # no runtimeClassName

Fix: add `runtimeClassName: nvidia` to the pod spec.
"""

from __future__ import annotations

from collections.abc import Iterator

from gpuherd.lint.model import Problem, Severity
from gpuherd.lint.rules.api import Option, Options, RuleOptions, strings
from gpuherd.lint.rules.base import LintContext, finding, pod_gpus
from gpuherd.runtimecfg.containerd import default_runtime, nvidia_entries

ID = "runtime-class"
SEVERITY: Severity = "warning"
OPTIONS: Options = {
    "classes": Option([], "RuntimeClasses that exist in the cluster though not in the input"),
}

# RuntimeClasses the distribution creates itself.
PROFILE_CLASSES = {
    "k3s": {"nvidia", "nvidia-experimental", "nvidia-cdi"},
    "microk8s": {"nvidia"},
}


def _runtime_default(ctx: LintContext, file: str) -> tuple[bool, str] | None:
    """(nvidia is the default, why) from containerd configs in the project or the profile."""
    configs = [
        rf
        for rf in ctx.runtime_files
        if rf.kind == "containerd" and nvidia_entries(rf.data) and ctx.same_project(file, rf.file)
    ]
    for rf in configs:
        name, _key = default_runtime(rf.data)
        if name is not None and "nvidia" in name:
            return True, f"{rf.file} makes {name} the default"
    if configs:
        return False, f"{configs[0].file} registers nvidia but keeps runc the default runtime"
    if ctx.profile in PROFILE_CLASSES:
        return False, f"the {ctx.profile} profile does not make nvidia the default runtime"
    return None


def check(ctx: LintContext, options: RuleOptions) -> Iterator[Problem]:
    for obj in ctx.objects:
        found = obj.pod_spec()
        if found is None or pod_gpus(obj) == 0:
            continue
        path, spec = found
        name = spec.get("runtimeClassName")
        if name is None:
            decided = _runtime_default(ctx, obj.doc.source)
            if decided is not None and not decided[0]:
                yield finding(
                    obj,
                    obj.value_pos(*path),
                    f"GPU pod without runtimeClassName ({decided[1]}): it starts without the "
                    "GPU and falls back to the CPU",
                    "add runtimeClassName: nvidia",
                )
            continue
        declared = {
            o.name: o.doc.source
            for o in ctx.of_kind("RuntimeClass")
            if ctx.same_project(obj.doc.source, o.doc.source)
        }
        known = (
            set(declared)
            | PROFILE_CLASSES.get(ctx.profile, set())
            | set(strings(options["classes"]))
        )
        if known and str(name) not in known:
            where = f" (RuntimeClasses from {', '.join(sorted(set(declared.values())))})"
            yield finding(
                obj,
                obj.value_pos(*path, "runtimeClassName"),
                f"RuntimeClass {name!r} is not in the input and not created by "
                f"{ctx.profile}: the pod is rejected" + (where if declared else ""),
                f"use one of: {', '.join(sorted(known))}",
            )
