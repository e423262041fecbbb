"""CDI device annotations must be well formed and not inject more GPUs than requested.

What it does: checks `cdi.k8s.io/*` annotations on pods and pod templates: every device must be
a qualified CDI name (`vendor.com/class=name`), and NVIDIA GPU devices (`nvidia.com/gpu=...`)
must not exceed the pod's GPU request (`all` exceeds any request).

Why it matters: CDI injection happens in the runtime, after scheduling: GPUs injected this way
are invisible to the scheduler, so another pod gets the same GPU and both run out of memory. A
malformed name makes the container fail to start.

Example:
    annotations: {cdi.k8s.io/gpu: nvidia.com/gpu=all}    # and no nvidia.com/gpu limit

Fix: request GPUs through resources.limits and let the device plugin inject them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from gpuherd.lint.model import Problem, Severity
from gpuherd.lint.rules.api import Options, RuleOptions
from gpuherd.lint.rules.base import LintContext, finding, pod_gpus
from gpuherd.lint.sources.k8s import at_path

ID = "cdi"
SEVERITY: Severity = "error"
OPTIONS: Options = {}
_QUALIFIED = re.compile(
    r"^[a-z0-9][a-z0-9.-]*/[a-zA-Z0-9][a-zA-Z0-9._-]*=[a-zA-Z0-9][a-zA-Z0-9:._-]*$"
)


def check(ctx: LintContext, options: RuleOptions) -> Iterator[Problem]:
    for obj in ctx.objects:
        found = obj.pod_spec()
        if found is None:
            continue
        template_meta = (*found[0][:-1], "metadata")
        holders: list[tuple[tuple[str | int, ...], Any]] = [(("metadata",), obj.metadata)]
        if obj.kind != "Pod":
            holders.append((template_meta, at_path(obj.data, template_meta)))
        requested = pod_gpus(obj)
        for path, meta in holders:
            annotations = meta.get("annotations") if isinstance(meta, dict) else None
            for key, value in annotations.items() if isinstance(annotations, dict) else []:
                if not str(key).startswith("cdi.k8s.io/"):
                    continue
                pos = obj.value_pos(*path, "annotations", key)
                devices = [d.strip() for d in str(value).split(",") if d.strip()]
                bad = [d for d in devices if not _QUALIFIED.match(d)]
                if bad:
                    yield finding(
                        obj,
                        pos,
                        f"malformed CDI device name(s): {', '.join(bad)}",
                        "use vendor.com/class=name, e.g. nvidia.com/gpu=0",
                    )
                    continue
                gpus = [d.split("=", 1)[1] for d in devices if d.startswith("nvidia.com/gpu=")]
                if "all" in gpus or len(gpus) > requested:
                    what = "every GPU" if "all" in gpus else f"{len(gpus)} GPU(s)"
                    yield finding(
                        obj,
                        pos,
                        f"{key} injects {what} while the pod requests {requested}: the scheduler "
                        "does not see them",
                        "request GPUs in resources.limits instead",
                    )
