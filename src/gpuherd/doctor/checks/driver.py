"""Device nodes, kernel driver, user-space libraries, NVML and CUDA compatibility."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

from gpuherd.doctor.context import Context
from gpuherd.doctor.model import Check

# CUDA release -> minimum Linux driver (CUDA Toolkit release notes, "CUDA Toolkit and
# Corresponding Driver Versions"). A driver runs CUDA up to the newest release it meets.
CUDA_MIN_DRIVER: tuple[tuple[str, str], ...] = (
    ("13.0", "580.65.06"),
    ("12.9", "575.51.03"),
    ("12.8", "570.26"),
    ("12.6", "560.28.03"),
    ("12.5", "555.42.02"),
    ("12.4", "550.54.14"),
    ("12.3", "545.23.06"),
    ("12.2", "535.54.03"),
    ("12.1", "530.30.02"),
    ("12.0", "525.60.13"),
    ("11.8", "520.61.05"),
    ("11.7", "515.43.04"),
    ("11.6", "510.39.01"),
    ("11.5", "495.29.05"),
    ("11.4", "470.42.01"),
    ("11.3", "465.19.01"),
    ("11.2", "460.27.03"),
    ("11.1", "455.23"),
    ("11.0", "450.36.06"),
)


def _ver(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text))


def max_cuda_for_driver(driver: str) -> str | None:
    for cuda, minimum in CUDA_MIN_DRIVER:
        if _ver(driver) >= _ver(minimum):
            return cuda
    return None


def _gpus_wanted(ctx: Context) -> bool:
    value = ctx.env.get("NVIDIA_VISIBLE_DEVICES", "").strip()
    return value not in ("", "void", "none")


def check_device_nodes(ctx: Context) -> Check:
    present = [p for p in ("/dev/nvidiactl", "/dev/nvidia-uvm") if (ctx.root / p).exists()]
    nodes = ctx.device_nodes
    evidence = {"control": present, "gpus": nodes}
    in_container = ctx.mode == "container"
    if not nodes:
        if in_container:
            wanted = ctx.env.get("NVIDIA_VISIBLE_DEVICES")
            cause = (
                f"NVIDIA_VISIBLE_DEVICES={wanted} asks for GPUs but the container runtime "
                "injected none: it was started by plain runc"
                if wanted and _gpus_wanted(ctx)
                else "the container was given no GPU"
            )
            fix = (
                "start it with the NVIDIA runtime: `docker run --gpus all`, or in Kubernetes "
                "`runtimeClassName: nvidia` plus a `nvidia.com/gpu` limit"
            )
        else:
            cause = "no /dev/nvidiaN device nodes: the NVIDIA kernel driver is not loaded"
            fix = "load the driver (`sudo modprobe nvidia`, then `nvidia-smi` once as root)"
        return Check("device-nodes", "fail", cause, fix, evidence)
    missing = [p for p in ("/dev/nvidiactl", "/dev/nvidia-uvm") if p not in present]
    if missing:
        fix = (
            "create it with `sudo nvidia-modprobe -u -c=0` (CUDA needs nvidia-uvm)"
            if "/dev/nvidia-uvm" in missing
            else "reload the driver or the container"
        )
        return Check("device-nodes", "fail", f"missing {', '.join(missing)}", fix, evidence)
    unreadable = [p for p in [*present, *nodes] if not os.access(ctx.root / p, os.R_OK | os.W_OK)]
    if unreadable:
        return Check(
            "device-nodes",
            "fail",
            f"no read/write access to {', '.join(unreadable)}",
            "add the user to the group owning the devices (often `video`), or run the "
            "container with the GPU granted",
            evidence,
        )
    return Check(
        "device-nodes",
        "ok",
        f"{len(nodes)} GPU device node{'s' if len(nodes) != 1 else ''} "
        f"({', '.join(nodes)}), /dev/nvidiactl, /dev/nvidia-uvm",
        None,
        evidence,
    )


def check_kernel_driver(ctx: Context) -> Check:
    if ctx.kernel_version is None:
        fix = (
            "in a container the NVIDIA runtime mounts /proc/driver/nvidia: start it with the "
            "NVIDIA runtime"
            if ctx.mode == "container"
            else "install and load the NVIDIA driver (`sudo modprobe nvidia`; check `dmesg`)"
        )
        return Check(
            "kernel-driver",
            "fail",
            "no NVIDIA kernel driver: /proc/driver/nvidia/version is missing",
            fix,
        )
    models = [g.model or "unknown model" for g in ctx.gpus]
    text = f"kernel module {ctx.kernel_version}"
    if models:
        text += f"; {len(models)} GPU{'s' if len(models) != 1 else ''}: {', '.join(models)}"
    gpus = [{"model": g.model, "uuid": g.uuid, "bus": g.bus} for g in ctx.gpus]
    return Check("kernel-driver", "ok", text, None, {"version": ctx.kernel_version, "gpus": gpus})


def check_user_libs(ctx: Context) -> Check:
    found = {stem: ctx.lib_version(stem) for stem in ("libnvidia-ml", "libcuda")}
    evidence = {stem: {"path": p, "version": v} for stem, (p, v) in found.items()}
    missing = [f"{stem}.so.1" for stem, (p, _v) in found.items() if p is None]
    if missing:
        fix = (
            "add 'utility' and 'compute' to NVIDIA_DRIVER_CAPABILITIES (or leave it unset) so "
            "the runtime mounts them"
            if ctx.mode == "container"
            else "install the NVIDIA driver's user-space libraries (same version as the kernel "
            "module)"
        )
        return Check(
            "user-libs",
            "fail",
            f"{' and '.join(missing)} not found in {len(ctx.lib_dirs)} library directories",
            fix,
            evidence,
        )
    mismatched = [
        f"{stem} {v}"
        for stem, (_p, v) in found.items()
        if v is not None and ctx.kernel_version is not None and v != ctx.kernel_version
    ]
    if mismatched:
        fix = (
            "a container image must not ship its own driver libraries: remove the "
            "nvidia driver/libnvidia-* packages from the image"
            if ctx.mode == "container"
            else "the driver was upgraded without reloading the kernel module: reboot"
        )
        return Check(
            "user-libs",
            "fail",
            f"driver/library version mismatch: kernel module {ctx.kernel_version}, "
            f"{', '.join(mismatched)}; NVML and CUDA refuse to start",
            fix,
            evidence,
        )
    version = found["libnvidia-ml"][1] or "unknown version"
    return Check(
        "user-libs", "ok", f"libnvidia-ml.so.1 and libcuda.so.1 found ({version})", None, evidence
    )


def check_nvml(ctx: Context) -> tuple[Check, object | None]:
    """The NVML check, and the snapshot it read (for the summary) when it worked."""
    if not ctx.live and ctx.nvml_lib is None:
        return Check("nvml", "skip", "not run on a captured tree (--root)"), None
    from gpuherd.gpu.base import BackendUnavailable
    from gpuherd.gpu.nvml import NvmlBackend

    try:
        backend = NvmlBackend(lib=ctx.nvml_lib)
    except BackendUnavailable as exc:
        return Check("nvml", "fail", exc.message, exc.hint), None
    try:
        snap = backend.snapshot()
    finally:
        backend.close()
    names = [f"{d.index}: {d.name}" for d in snap.devices]
    return Check(
        "nvml",
        "ok",
        f"NVML sees {len(names)} GPU(s): {'; '.join(names)}",
        None,
        {"driver": snap.driver_version, "cuda": snap.cuda_version},
    ), snap


def check_cuda_compat(ctx: Context, nvml_cuda: str | None) -> Check:
    required = None
    source = ""
    req = ctx.env.get("NVIDIA_REQUIRE_CUDA", "")
    match = re.search(r"cuda>=(\d+\.\d+)", req)
    if match:
        required, source = match.group(1), f"NVIDIA_REQUIRE_CUDA={req.split()[0]}"
    elif ctx.env.get("CUDA_VERSION"):
        parts = ctx.env["CUDA_VERSION"].split(".")
        required, source = ".".join(parts[:2]), f"CUDA_VERSION={ctx.env['CUDA_VERSION']}"
    if required is None:
        return Check(
            "cuda-compat",
            "skip",
            "no CUDA_VERSION or NVIDIA_REQUIRE_CUDA in the environment (not a CUDA image)",
        )
    driver_max = nvml_cuda or (
        max_cuda_for_driver(ctx.kernel_version) if ctx.kernel_version else None
    )
    if driver_max is None:
        return Check("cuda-compat", "skip", f"{source}, but the driver version is unknown")
    evidence = {"required": required, "driver_max": driver_max, "from": source}
    if _ver(required) > _ver(driver_max):
        disabled = ctx.env.get("NVIDIA_DISABLE_REQUIRE", "").lower() in ("1", "true")
        return Check(
            "cuda-compat",
            "warn" if disabled else "fail",
            f"the image needs CUDA {required} ({source}); driver {ctx.kernel_version} supports "
            f"up to CUDA {driver_max}",
            f"upgrade the host driver, or use an image built for CUDA {driver_max} or older",
            evidence,
        )
    return Check(
        "cuda-compat", "ok", f"image CUDA {required} <= driver's CUDA {driver_max}", None, evidence
    )


def driver_checks(ctx: Context) -> Iterator[Check]:
    yield check_device_nodes(ctx)
    yield check_kernel_driver(ctx)
    yield check_user_libs(ctx)
