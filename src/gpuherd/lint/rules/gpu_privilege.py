"""Reach GPUs through the device plugin, not hostPath /dev/nvidia*, privileged or SYS_ADMIN.

What it does: flags hostPath volumes of /dev/nvidia* and, on containers that use a GPU (a GPU
request, a CUDA image or a /dev/nvidia mount), `privileged: true` and `SYS_ADMIN`.

Why it matters: these bypass the device plugin (the scheduler does not count the GPU) and hand
the container far more than the GPU: a privileged container sees every device on the node.
The NVIDIA runtime needs neither.

Example:
    volumes: [{name: nvidia0, hostPath: {path: /dev/nvidia0}}]

Fix: request nvidia.com/gpu in limits, use runtimeClassName: nvidia, drop the mounts and the
privilege.
"""

from __future__ import annotations

from collections.abc import Iterator

from gpuherd.lint.model import Problem, Severity
from gpuherd.lint.rules.api import Options, RuleOptions
from gpuherd.lint.rules.base import LintContext, finding, gpu_request
from gpuherd.lint.sources.access import as_list, dig
from gpuherd.lint.sources.k8s import containers

ID = "gpu-privilege"
SEVERITY: Severity = "warning"
OPTIONS: Options = {}


def check(ctx: LintContext, options: RuleOptions) -> Iterator[Problem]:
    for obj in ctx.objects:
        found = obj.pod_spec()
        if found is None:
            continue
        path, spec = found
        gpu_volumes: set[str] = set()
        for i, volume in enumerate(as_list(spec.get("volumes"))):
            host = volume.get("hostPath") if isinstance(volume, dict) else None
            if isinstance(host, dict) and str(host.get("path", "")).startswith("/dev/nvidia"):
                gpu_volumes.add(str(volume.get("name")))
                yield finding(
                    obj,
                    obj.value_pos(*path, "volumes", i, "hostPath", "path"),
                    f"hostPath {host.get('path')} hands the GPU to the pod behind the scheduler's "
                    "back",
                    "request nvidia.com/gpu and use runtimeClassName: nvidia instead",
                )
        for c in containers(obj):
            mounts = as_list(c.data.get("volumeMounts"))
            uses_gpu = (
                gpu_request(c) > 0
                or "cuda" in str(c.data.get("image", "")).lower()
                or any(isinstance(m, dict) and m.get("name") in gpu_volumes for m in mounts)
            )
            sec = c.data.get("securityContext")
            if not uses_gpu or not isinstance(sec, dict):
                continue
            if sec.get("privileged") is True:
                yield finding(
                    c,
                    c.value_pos("securityContext", "privileged"),
                    "privileged: true is not needed for a GPU and exposes every device of the node",
                    "remove privileged; the nvidia runtime provides the GPU",
                )
            caps = as_list(dig(sec, "capabilities", "add"))
            for j, cap in enumerate(caps if isinstance(caps, list) else []):
                if str(cap).upper().removeprefix("CAP_") == "SYS_ADMIN":
                    yield finding(
                        c,
                        c.value_pos("securityContext", "capabilities", "add", j),
                        "SYS_ADMIN is not needed for a GPU and is close to root on the node",
                        "remove SYS_ADMIN",
                    )
