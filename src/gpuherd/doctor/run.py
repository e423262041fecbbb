"""Run every check that applies to this host or container and build the report."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Literal

from gpuherd.doctor.checks.driver import (
    check_cuda_compat,
    check_nvml,
    driver_checks,
    max_cuda_for_driver,
)
from gpuherd.doctor.checks.env import check_capabilities, check_kubernetes, check_visible_devices
from gpuherd.doctor.checks.graphics import check_egl_probe, check_gl_vendor
from gpuherd.doctor.checks.host import (
    check_cdi,
    check_containerd,
    check_docker,
    check_ecs,
    check_nvml_health,
    check_toolkit,
    wired_runtimes,
)
from gpuherd.doctor.context import Context, detect_mode, gather, read_env
from gpuherd.doctor.model import Check, Report
from gpuherd.runtimecfg.base import Root
from gpuherd.units import format_bytes

ModeChoice = Literal["auto", "host", "container"]


def run_doctor(
    *,
    root: Path = Path("/"),
    mode: ModeChoice = "auto",
    need: set[str] | None = None,
    probe: bool = False,
    nvml_lib: Any = None,
) -> Report:
    """Diagnose `root` (the live system when "/"). `nvml_lib` replaces the NVML binding."""
    view = Root(root)
    env = read_env(view)
    detected, evidence = detect_mode(view, env)
    ctx = gather(
        Context(
            root=view,
            env=env,
            mode=detected if mode == "auto" else mode,
            mode_evidence=evidence if mode == "auto" else [f"--{mode}"],
            live=root == Path("/"),
            need=need,
            probe=probe,
            nvml_lib=nvml_lib,
        )
    )
    checks: list[Check] = list(driver_checks(ctx))
    nvml_check, snapshot = check_nvml(ctx)
    checks.append(nvml_check)
    checks += [check_visible_devices(ctx), check_capabilities(ctx)]
    cuda = getattr(snapshot, "cuda_version", None)
    checks += [check_cuda_compat(ctx, cuda), check_gl_vendor(ctx), check_egl_probe(ctx)]
    if ctx.mode == "container":
        checks.append(check_kubernetes(ctx))
    else:
        checks += [
            *check_toolkit(ctx),
            check_docker(ctx),
            *check_containerd(ctx),
            check_cdi(ctx),
            check_nvml_health(ctx),
            check_ecs(ctx),
        ]
    runtimes = tuple(wired_runtimes(ctx)) if ctx.mode == "host" else ()
    return Report(
        ctx.mode, tuple(checks), _summary(ctx, snapshot, cuda), ctx.mode_evidence, runtimes
    )


def run_runtime_checks(*, root: Path = Path("/")) -> list[Check]:
    """Only the container-runtime wiring checks, read from files (what `setup` verifies)."""
    view = Root(root)
    ctx = gather(
        Context(
            root=view,
            env=read_env(view),
            mode="host",
            mode_evidence=["runtime checks"],
            live=False,
            need=None,
            probe=False,
        )
    )
    return [*check_toolkit(ctx), check_docker(ctx), *check_containerd(ctx), check_cdi(ctx)]


def _summary(ctx: Context, snapshot: Any, cuda: str | None) -> str:
    """`1x NVIDIA GeForce RTX 3080 Ti (12 GiB), driver 550.54.14, CUDA 12.4`."""
    if snapshot is not None and snapshot.devices:
        counts = Counter((d.name, d.memory_total) for d in snapshot.devices)
        gpus = ", ".join(
            f"{n}x {name} ({format_bytes(total, precision=0)})"
            for (name, total), n in counts.items()
        )
        driver = snapshot.driver_version or ctx.kernel_version
    else:
        models = Counter(g.model or "NVIDIA GPU" for g in ctx.gpus)
        if not models and ctx.device_nodes:
            models = Counter({"NVIDIA GPU": len(ctx.device_nodes)})
        gpus = ", ".join(f"{n}x {name}" for name, n in models.items()) or "no GPU found"
        driver = ctx.kernel_version
    parts = [gpus]
    if driver:
        parts.append(f"driver {driver}")
    cuda = cuda or (max_cuda_for_driver(driver) if driver else None)
    if cuda:
        parts.append(f"CUDA {cuda}")
    return ", ".join(parts)
