"""containerd (and k3s config.toml.tmpl) must register the nvidia runtime usably.

What it does: checks nvidia runtime entries of the CRI plugin: `BinaryName` should be
nvidia-container-runtime; an nvidia runtime registered under a name no RuntimeClass in the
input uses as its handler; `default_runtime_name` set to nvidia (info).

Why it matters: pods reach the runtime through `runtimeClassName`, whose RuntimeClass names the
containerd runtime as `handler`; a name mismatch makes every GPU pod fail to start. With nvidia
as the default runtime every pod can take GPUs through NVIDIA_VISIBLE_DEVICES.

Example:
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia-gpu.options]
      BinaryName = "/usr/bin/nvidia-container-runtime"     # RuntimeClass handler: nvidia

Fix: register the runtime under the RuntimeClass's handler name (`nvidia-ctk runtime
configure --runtime=containerd` uses `nvidia`).
"""

from __future__ import annotations

from collections.abc import Iterator

from gpuherd.lint.model import Problem, Severity
from gpuherd.lint.rules.api import Options, RuleOptions
from gpuherd.lint.rules.base import LintContext, judged
from gpuherd.lint.sources.runtime import RuntimeFile
from gpuherd.runtimecfg.base import Judgement, Root
from gpuherd.runtimecfg.containerd import judge_containerd, nvidia_entries

ID = "runtime-containerd"
SEVERITY: Severity = "error"
OPTIONS: Options = {}


def _unused_names(rf: RuntimeFile, ctx: LintContext) -> list[Judgement]:
    handlers = {str(o.data.get("handler")) for o in ctx.objects if o.kind == "RuntimeClass"}
    if not handlers:
        return []
    return [
        Judgement(
            "containerd-unused-runtime",
            "warning",
            f"nvidia runtime {e.name!r} is used by no RuntimeClass handler in the input "
            f"(handlers: {', '.join(sorted(handlers))}): runtimeClassName pods fail to start",
            f"register it under the handler's name, or set the RuntimeClass handler to {e.name!r}",
            e.key,
        )
        for e in nvidia_entries(rf.data)
        if e.name not in handlers
    ]


def check(ctx: LintContext, options: RuleOptions) -> Iterator[Problem]:
    return judged(
        ctx,
        "containerd",
        lambda rf: judge_containerd(rf.data, Root(), check_paths=False) + _unused_names(rf, ctx),
    )
