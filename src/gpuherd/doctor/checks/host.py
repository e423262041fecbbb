"""Host-only checks: container toolkit and runtime wiring, CDI, NVML health, ECS agent."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from typing import Any

import yaml

from gpuherd.doctor.context import Context
from gpuherd.doctor.model import Check, Status
from gpuherd.runtimecfg.base import Judgement
from gpuherd.runtimecfg.containerd import judge_containerd, nvidia_entries, parse_containerd
from gpuherd.runtimecfg.docker import judge_daemon_json, nvidia_registered
from gpuherd.runtimecfg.toolkit import judge_toolkit_config

TOOLKIT_CONFIG = "/etc/nvidia-container-runtime/config.toml"
DAEMON_JSON = "/etc/docker/daemon.json"
CONTAINERD_CONFIGS = (
    "/etc/containerd/config.toml",
    "/var/lib/rancher/k3s/agent/etc/containerd/config.toml.tmpl",
    "/var/lib/rancher/k3s/agent/etc/containerd/config.toml",
    "/var/lib/rancher/rke2/agent/etc/containerd/config.toml",
    "/var/snap/microk8s/current/args/containerd-template.toml",
)
CDI_SPECS = ("/etc/cdi/nvidia.yaml", "/var/run/cdi/nvidia.yaml")
_STATUS: dict[str, Status] = {"error": "fail", "warning": "warn", "info": "ok"}


def _from_judgements(check_id: str, where: str, judgements: list[Judgement], ok: str) -> Check:
    """Fold a file's judgements into one check: the worst decides the status."""
    if not judgements:
        return Check(check_id, "ok", f"{where}: {ok}")
    order = {"fail": 0, "warn": 1, "ok": 2}
    worst = min(judgements, key=lambda j: order[_STATUS[j.severity]])
    status = _STATUS[worst.severity]
    others = [j for j in judgements if j is not worst]
    message = f"{where}: {worst.message}"
    if others:
        message += "; also: " + "; ".join(j.message for j in others)
    evidence = [
        {"id": j.id, "severity": j.severity, "key": list(j.key), "message": j.message, "fix": j.fix}
        for j in judgements
    ]
    return Check(check_id, status, message, worst.fix, evidence)


def _parse_error(check_id: str, where: str, exc: Exception) -> Check:
    return Check(check_id, "fail", f"{where} does not parse: {exc}", f"fix the syntax of {where}")


def check_toolkit(ctx: Context) -> Iterator[Check]:
    binaries = {
        name: ctx.root.which(name)
        for name in ("nvidia-ctk", "nvidia-container-runtime", "nvidia-container-runtime-hook")
    }
    if not any(binaries.values()):
        yield Check(
            "toolkit",
            "warn",
            "NVIDIA Container Toolkit is not installed: containers on this host cannot get GPUs",
            "install nvidia-container-toolkit, then "
            "`sudo nvidia-ctk runtime configure --runtime=docker` (or containerd)",
            binaries,
        )
        return
    missing = [n for n, p in binaries.items() if p is None]
    yield Check(
        "toolkit",
        "warn" if missing else "ok",
        f"NVIDIA Container Toolkit: {', '.join(n for n, p in binaries.items() if p)}"
        + (f"; missing {', '.join(missing)}" if missing else ""),
        "reinstall nvidia-container-toolkit" if missing else None,
        binaries,
    )
    text = ctx.root.read_text(TOOLKIT_CONFIG)
    try:
        data: dict[str, Any] = tomllib.loads(text) if text is not None else {}
    except tomllib.TOMLDecodeError as exc:
        yield _parse_error("toolkit-config", TOOLKIT_CONFIG, exc)
        return
    where = TOOLKIT_CONFIG if text is not None else f"{TOOLKIT_CONFIG} (absent: defaults)"
    yield _from_judgements(
        "toolkit-config",
        where,
        judge_toolkit_config(data, ctx.root),
        "low-level runtime found, no loop",
    )


def check_docker(ctx: Context) -> Check:
    text = ctx.root.read_text(DAEMON_JSON)
    if text is None:
        return Check("docker-daemon", "skip", f"no {DAEMON_JSON}")
    import json

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return _parse_error("docker-daemon", DAEMON_JSON, exc)
    if not isinstance(data, dict):
        return Check(
            "docker-daemon", "fail", f"{DAEMON_JSON} is not a JSON object", "make it a JSON object"
        )
    return _from_judgements(
        "docker-daemon",
        DAEMON_JSON,
        judge_daemon_json(data, ctx.root, check_paths=True),
        "runtimes registered correctly",
    )


def check_containerd(ctx: Context) -> Iterator[Check]:
    for path in CONTAINERD_CONFIGS:
        text = ctx.root.read_text(path)
        if text is None:
            continue
        try:
            data = _with_imports(ctx, path, parse_containerd(text))
        except tomllib.TOMLDecodeError as exc:
            yield _parse_error("containerd", path, exc)
            continue
        if not nvidia_entries(data):
            yield Check(
                "containerd",
                "warn",
                f"{path}: no nvidia runtime registered: pods with "
                "runtimeClassName: nvidia fail to start",
                "`sudo nvidia-ctk runtime configure --runtime=containerd` (k3s adds it "
                "itself when the toolkit is installed before k3s starts)",
            )
            continue
        yield _from_judgements(
            "containerd",
            path,
            judge_containerd(data, ctx.root, check_paths=True),
            "nvidia runtime registered",
        )


def _with_imports(ctx: Context, path: str, data: dict[str, Any]) -> dict[str, Any]:
    """The config as containerd sees it: files named by `imports` merged over it (drop-ins such
    as conf.d/99-nvidia.toml carry the nvidia runtime). Merged deeply, as containerd 2.1 does."""
    patterns = data.get("imports")
    if not isinstance(patterns, list):
        return data
    import glob
    import os

    merged = data
    for pattern in patterns:
        if not isinstance(pattern, str):
            continue
        inner = pattern if pattern.startswith("/") else f"{os.path.dirname(path)}/{pattern}"
        for found in sorted(glob.glob(str(ctx.root / inner))):
            text = ctx.root.read_text("/" + os.path.relpath(found, ctx.root.path))
            if text is not None:
                merged = _deep_merge(merged, parse_containerd(text))
    return merged


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def wired_runtimes(ctx: Context) -> list[str]:
    """Engines whose config registers an nvidia runtime (for the one-line status)."""
    import json

    wired = []
    text = ctx.root.read_text(DAEMON_JSON)
    try:
        daemon = json.loads(text) if text is not None else None
    except (json.JSONDecodeError, RecursionError):
        daemon = None
    if isinstance(daemon, dict) and nvidia_registered(daemon):
        wired.append("docker")
    for path in CONTAINERD_CONFIGS:
        text = ctx.root.read_text(path)
        if text is None:
            continue
        try:
            data = _with_imports(ctx, path, parse_containerd(text))
        except (tomllib.TOMLDecodeError, RecursionError):
            continue
        engine = next((e for e in ("k3s", "rke2", "microk8s") if e in path), "containerd")
        if nvidia_entries(data) and engine not in wired:
            wired.append(engine)
    return wired


def check_cdi(ctx: Context) -> Check:
    for path in CDI_SPECS:
        text = ctx.root.read_text(path)
        if text is None:
            continue
        try:
            spec = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            return _parse_error("cdi", path, exc)
        devices = spec.get("devices", []) if isinstance(spec, dict) else []
        names = [d.get("name") for d in devices if isinstance(d, dict)]
        indices = [n for n in names if isinstance(n, str) and n.isdigit()]
        evidence = {"spec": path, "devices": names}
        if indices and len(indices) != len(ctx.device_nodes):
            return Check(
                "cdi",
                "warn",
                f"{path} lists {len(indices)} GPU(s), the host has "
                f"{len(ctx.device_nodes)}: the spec is stale",
                f"regenerate it: sudo nvidia-ctk cdi generate --output={path}",
                evidence,
            )
        return Check("cdi", "ok", f"{path} lists {', '.join(map(str, names))}", None, evidence)
    return Check("cdi", "skip", "no CDI spec (only needed for CDI mode: nvidia-ctk cdi generate)")


def check_ecs(ctx: Context) -> Check:
    text = ctx.root.read_text("/etc/ecs/ecs.config")
    if text is None:
        return Check("ecs-agent", "skip", "no ECS agent (/etc/ecs/ecs.config)")
    settings = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    if settings.get("ECS_ENABLE_GPU_SUPPORT", "").strip().lower() != "true":
        return Check(
            "ecs-agent",
            "fail",
            "ECS agent installed without ECS_ENABLE_GPU_SUPPORT=true: "
            "GPU task definitions will not be placed here",
            "echo ECS_ENABLE_GPU_SUPPORT=true >> /etc/ecs/ecs.config and restart the "
            "agent (use the ECS GPU-optimized AMI)",
        )
    return Check("ecs-agent", "ok", "ECS_ENABLE_GPU_SUPPORT=true")


def check_nvml_health(ctx: Context) -> Check:
    if not ctx.live and ctx.nvml_lib is None:
        return Check("nvml-health", "skip", "not run on a captured tree (--root)")
    from gpuherd.gpu.base import BackendUnavailable
    from gpuherd.gpu.nvml import NvmlBackend

    try:
        backend = NvmlBackend(lib=ctx.nvml_lib)
    except BackendUnavailable as exc:
        return Check("nvml-health", "skip", f"NVML unavailable: {exc.message}")
    q = backend.nvml.query
    lib = backend.nvml.lib
    problems, facts = [], []
    try:
        for index in range(q("nvmlDeviceGetCount") or 0):
            handle = q("nvmlDeviceGetHandleByIndex", index)
            persistence = q("nvmlDeviceGetPersistenceMode", handle)
            mig = q("nvmlDeviceGetMigMode", handle)
            ecc = q(
                "nvmlDeviceGetTotalEccErrors",
                handle,
                lib.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                lib.NVML_VOLATILE_ECC,
            )
            facts.append(
                {
                    "index": index,
                    "persistence": persistence,
                    "mig": mig[0] if isinstance(mig, list | tuple) else mig,
                    "uncorrected_ecc": ecc,
                }
            )
            if persistence == 0:
                problems.append(
                    f"GPU {index}: persistence mode off (slow first use; cuda-checkpoint needs it)"
                )
            if ecc:
                problems.append(f"GPU {index}: {ecc} uncorrected ECC errors since boot")
    finally:
        backend.close()
    if problems:
        return Check(
            "nvml-health",
            "warn",
            "; ".join(problems),
            "enable persistence: sudo nvidia-smi -pm 1 (or run nvidia-persistenced); "
            "ECC errors: drain the GPU and reset it",
            facts,
        )
    return Check("nvml-health", "ok", "persistence mode on, no uncorrected ECC errors", None, facts)
