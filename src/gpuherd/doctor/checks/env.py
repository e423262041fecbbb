"""NVIDIA_VISIBLE_DEVICES, NVIDIA_DRIVER_CAPABILITIES and the pod's GPU request."""

from __future__ import annotations

from gpuherd.doctor.context import Context
from gpuherd.doctor.model import Check
from gpuherd.runtimecfg.nvenv import (
    CAPABILITIES,
    DEFAULT_CAPABILITIES,
    effective_capabilities,
    parse_visible,
)

# Installed software that implies a capability (evidence, path under the root).
_VIDEO_HINTS = (
    "/usr/bin/ffmpeg",
    "/usr/lib/jellyfin-ffmpeg/ffmpeg",
    "/usr/lib/plexmediaserver",
    "/usr/local/bin/ffmpeg",
)
_GRAPHICS_HINTS = (
    "/usr/bin/Xvfb",
    "/usr/bin/xvfb-run",
    "/usr/lib/x86_64-linux-gnu/libEGL.so.1",
    "/usr/lib/x86_64-linux-gnu/libvulkan.so.1",
    "/usr/bin/blender",
)


def needed_capabilities(ctx: Context) -> tuple[set[str], dict[str, str], bool]:
    """(needs, evidence per inferred need, explicit?) from --need or what is installed."""
    if ctx.need is not None:
        return set(ctx.need), dict.fromkeys(ctx.need, "--need"), True
    needs = set(DEFAULT_CAPABILITIES)
    evidence: dict[str, str] = {}
    for path in _VIDEO_HINTS:
        if (ctx.root / path).exists():
            needs.add("video")
            evidence["video"] = f"{path} is installed"
            break
    for path in _GRAPHICS_HINTS:
        if (ctx.root / path).exists():
            needs.add("graphics")
            evidence["graphics"] = f"{path} is installed"
            break
    if ctx.env.get("DISPLAY") or (ctx.root / "tmp/.X11-unix").is_dir():
        needs.add("display")
        evidence["display"] = (
            "DISPLAY is set" if ctx.env.get("DISPLAY") else "/tmp/.X11-unix exists"
        )
    return needs, evidence, False


def check_visible_devices(ctx: Context) -> Check:
    value = ctx.env.get("NVIDIA_VISIBLE_DEVICES")
    if value is None:
        if ctx.mode == "host":
            return Check("env-visible-devices", "skip", "not set (not needed on a host)")
        return Check(
            "env-visible-devices",
            "ok",
            "not set: the NVIDIA runtime injects no GPU "
            "through the environment (devices may still come from --gpus, CDI or the "
            "device plugin)",
        )
    tokens, error = parse_visible(value)
    evidence = {"value": value, "tokens": tokens}
    if error is not None:
        return Check(
            "env-visible-devices",
            "fail",
            f"NVIDIA_VISIBLE_DEVICES={value}: {error}",
            "use 'all', 'none', 'void', or a comma list of indices, GPU-/MIG- UUIDs",
            evidence,
        )
    meaning = {
        "all": "every GPU",
        "none": "no GPU, but the driver files are mounted",
        "void": "no GPU (as under plain runc)",
    }.get(tokens[0] if tokens else "void", f"{len(tokens)} device(s): {value}")
    return Check(
        "env-visible-devices",
        "ok",
        f"NVIDIA_VISIBLE_DEVICES={value or '(empty)'}: {meaning}",
        None,
        evidence,
    )


def check_capabilities(ctx: Context) -> Check:
    value = ctx.env.get("NVIDIA_DRIVER_CAPABILITIES")
    have, unknown = effective_capabilities(value)
    needs, why, explicit = needed_capabilities(ctx)
    evidence = {"value": value, "effective": sorted(have), "needed": sorted(needs), "why": why}
    if unknown:
        return Check(
            "env-capabilities",
            "fail",
            f"NVIDIA_DRIVER_CAPABILITIES has unknown token(s): {', '.join(unknown)}",
            f"use only: {', '.join(sorted(CAPABILITIES))} or all",
            evidence,
        )
    if ctx.mode == "host" and value is None:
        return Check(
            "env-capabilities", "skip", "not set (a host has every capability)", None, evidence
        )
    missing = sorted(needs - have)
    if missing:
        reasons = "; ".join(f"{c}: {why.get(c, 'needed by CUDA and nvidia-smi')}" for c in missing)
        effects = {
            "video": "NVENC/NVDEC fail ('Cannot load libnvidia-encode.so.1')",
            "graphics": "OpenGL/EGL/Vulkan fail or fall back to llvmpipe (software)",
            "display": "X11 output fails",
            "compute": "CUDA is missing",
            "utility": "nvidia-smi and NVML are missing",
        }
        shown = value if value is not None else "(unset: utility,compute)"
        return Check(
            "env-capabilities",
            "fail" if explicit or "graphics" in missing else "warn",
            f"NVIDIA_DRIVER_CAPABILITIES={shown} lacks {', '.join(missing)} "
            f"({reasons}): {'; '.join(effects[c] for c in missing)}",
            f"set NVIDIA_DRIVER_CAPABILITIES={','.join(sorted(have | needs))} (or all)",
            evidence,
        )
    return Check(
        "env-capabilities",
        "ok",
        f"capabilities {','.join(sorted(have))} cover what is needed ({','.join(sorted(needs))})",
        None,
        evidence,
    )


def check_kubernetes(ctx: Context) -> Check:
    if "KUBERNETES_SERVICE_HOST" not in ctx.env:
        return Check("kubernetes", "skip", "not in a Kubernetes pod")
    value = ctx.env.get("NVIDIA_VISIBLE_DEVICES", "")
    tokens, _ = parse_visible(value)
    # The device plugin hands out GPUs by UUID (envvar strategy) or by volume mounts.
    allocated = (
        any(t.startswith(("GPU-", "MIG-")) for t in tokens)
        or (ctx.root / "var/run/nvidia-container-devices").exists()
    )
    if allocated and ctx.device_nodes:
        return Check(
            "kubernetes",
            "ok",
            "the pod was allocated GPUs by the device plugin",
            None,
            {"visible": value},
        )
    if allocated:
        return Check(
            "kubernetes",
            "fail",
            "the device plugin allocated GPUs to this pod but no device nodes exist",
            "the node's default runtime is not nvidia: set `runtimeClassName: nvidia` on the pod",
            {"visible": value},
        )
    if ctx.device_nodes:
        return Check(
            "kubernetes",
            "warn",
            "GPUs are visible but this pod did not request any (NVIDIA_VISIBLE_DEVICES="
            f"{value or 'unset'}): it bypasses the scheduler's GPU accounting",
            "request the GPU in resources.limits (nvidia.com/gpu) or set "
            "NVIDIA_VISIBLE_DEVICES=void",
            {"visible": value},
        )
    if tokens and tokens[0] == "all":
        return Check(
            "kubernetes",
            "fail",
            "NVIDIA_VISIBLE_DEVICES=all (set by the image) but the pod got no GPU",
            "add a `nvidia.com/gpu` limit and `runtimeClassName: nvidia` (k3s, microk8s "
            "and most nvidia-ctk installs do not make nvidia the default runtime)",
            {"visible": value},
        )
    return Check("kubernetes", "skip", "this pod requested no GPU")
