"""NVIDIA_DRIVER_CAPABILITIES must include what the workload uses.

What it does: on GPU containers, checks the capability list (unset means `utility,compute`):
unknown tokens are errors; heuristics, each quoting its evidence from the image, command or
args, warn when video is missing for transcoders (ffmpeg, Plex, Jellyfin, Emby, Tdarr, Immich),
graphics for renderers (xvfb-run, Blender, Factorio/mapshot, Gazebo, Kasm, Steam), display when
DISPLAY or /tmp/.X11-unix is used, and compute/utility for CUDA images and nvidia-smi.

Why it matters: the runtime mounts only the listed driver parts. Without `video` NVENC fails
("Cannot load libnvidia-encode.so.1"); without `graphics` OpenGL/Vulkan fall back to llvmpipe on
the CPU (a 5-minute render ran over an hour).

Example:
    image: martydingo/mapshot      # renders with OpenGL under xvfb
    env: [{name: NVIDIA_DRIVER_CAPABILITIES, value: "compute,utility"}]

Fix: add the capability, e.g. `compute,utility,graphics`, or `all`.
"""

from __future__ import annotations

from collections.abc import Iterator

from gpuherd.lint.model import Problem, Severity
from gpuherd.lint.rules.api import Options, RuleOptions
from gpuherd.lint.rules.base import LintContext, finding, gpu_request
from gpuherd.lint.sources.access import as_list
from gpuherd.lint.sources.k8s import Container, containers
from gpuherd.runtimecfg.nvenv import CAPABILITIES, effective_capabilities, needs_from_text

ID = "capabilities"
SEVERITY: Severity = "warning"
OPTIONS: Options = {}


def _uses_display(c: Container) -> str | None:
    if "DISPLAY" in c.env():
        return "env DISPLAY"
    for mount in as_list(c.data.get("volumeMounts")):
        if isinstance(mount, dict) and str(mount.get("mountPath", "")).startswith("/tmp/.X11-unix"):
            return "a /tmp/.X11-unix mount"
    return None


def check(ctx: LintContext, options: RuleOptions) -> Iterator[Problem]:
    for obj in ctx.objects:
        for c in containers(obj):
            if gpu_request(c) == 0:
                continue
            entry = c.env().get("NVIDIA_DRIVER_CAPABILITIES")
            value = str(entry[0]) if entry is not None else None
            pos = c.value_pos("env", entry[1], "value") if entry is not None else c.value_pos()
            have, unknown = effective_capabilities(value)
            if unknown:
                yield finding(
                    c,
                    pos,
                    f"NVIDIA_DRIVER_CAPABILITIES has unknown token(s): {', '.join(unknown)}",
                    f"use only {', '.join(sorted(CAPABILITIES))} or all",
                    severity="error",
                )
                continue
            evidence = needs_from_text(c.command_text())
            display = _uses_display(c)
            if display:
                evidence["display"] = display
            if value is None:
                evidence.pop("compute", None)  # unset already means utility,compute
            missing = {cap: why for cap, why in evidence.items() if cap not in have}
            if "compute" in missing and "utility" not in have:
                missing["utility"] = missing["compute"]
            if not missing:
                continue
            shown = value if value is not None else "unset (utility,compute)"
            reasons = ", ".join(f"{cap} ({why!r})" for cap, why in sorted(missing.items()))
            wanted = ",".join(sorted(have | set(missing)))
            yield finding(
                c,
                pos,
                f"NVIDIA_DRIVER_CAPABILITIES is {shown} but the container needs {reasons}",
                f"set NVIDIA_DRIVER_CAPABILITIES={wanted}",
            )
