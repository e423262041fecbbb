"""Compose GPU reservations must be ones Docker accepts and that keep CUDA working.

What it does: checks `deploy.resources.reservations.devices` of every service: `capabilities`
is required; `count` and `device_ids` exclude each other; `count` must be above 0 (or `all`);
capabilities must be known; a list naming driver capabilities but not `compute` (`[gpu, video]`)
drops CUDA (a warning); one without `utility` only loses nvidia-smi and NVML (info, or a warning
when the service's command mentions them); devices are not allowed under `limits`. The legacy
`runtime: nvidia` form is reported as info.

Why it matters: Docker rejects the file, or starts the container without a GPU; capabilities
other than `gpu` become NVIDIA_DRIVER_CAPABILITIES, so `[gpu, video]` gives NVENC but no CUDA and
no nvidia-smi.

Example:
    deploy: {resources: {reservations: {devices: [{driver: nvidia, count: 1}]}}}   # no capabilities

Fix: `devices: [{driver: nvidia, count: 1, capabilities: [gpu]}]` (add `video`, `graphics` along
with `compute,utility` when needed).
"""

from __future__ import annotations

from collections.abc import Iterator

from gpuherd.lint.model import Problem, Severity
from gpuherd.lint.rules.api import Option, Options, RuleOptions
from gpuherd.lint.rules.base import LintContext, finding_at
from gpuherd.lint.sources.access import as_dict, as_list, dig
from gpuherd.lint.sources.compose import Service
from gpuherd.runtimecfg.nvenv import CAPABILITIES

ID = "compose-gpu"
SEVERITY: Severity = "error"
OPTIONS: Options = {
    "require_utility": Option(
        False, "report a missing `utility` capability as a warning even when nothing shows NVML use"
    ),
}
_KNOWN = CAPABILITIES | {"gpu", "nvidia", "tpu"}


def _service_findings(svc: Service, require_utility: bool) -> Iterator[Problem]:
    def at(
        rel: tuple[str | int, ...],
        message: str,
        fix: str,
        *,
        key: bool = False,
        severity: Severity | None = None,
    ) -> Problem:
        pos = svc.key_pos(*rel) if key else svc.value_pos(*rel)
        return finding_at(
            svc.doc.source,
            pos,
            label=svc.label,
            message=message,
            fix=fix,
            severity=severity,
        )

    if svc.data.get("runtime") == "nvidia":
        yield at(
            ("runtime",),
            "runtime: nvidia is the legacy form: it needs the runtime registered in daemon.json",
            "use deploy.resources.reservations.devices with capabilities: [gpu]",
            severity="info",
        )
    resources = as_dict(dig(svc.data, "deploy", "resources"))
    if not isinstance(resources, dict):
        return
    limits = as_dict(resources.get("limits"))
    if isinstance(limits, dict) and "devices" in limits:
        yield at(
            ("deploy", "resources", "limits", "devices"),
            "devices are only allowed under reservations",
            "move them to deploy.resources.reservations.devices",
            key=True,
        )
    devices = as_list(dig(resources, "reservations", "devices"))
    base = ("deploy", "resources", "reservations", "devices")
    for i, dev in enumerate(devices if isinstance(devices, list) else []):
        if not isinstance(dev, dict):
            continue
        here = (*base, i)
        caps = dev.get("capabilities")
        if caps is None:
            yield at(
                here,
                "a device reservation needs `capabilities`: Docker rejects it",
                "add capabilities: [gpu]",
            )
        if "count" in dev and "device_ids" in dev:
            yield at(
                (*here, "device_ids"),
                "count and device_ids cannot both be set",
                "keep one of them",
                key=True,
            )
        count = dev.get("count")
        if count is not None and count != "all" and (not isinstance(count, int) or count < 1):
            yield at(
                (*here, "count"), f"count {count!r} reserves no GPU", "use a count >= 1 or all"
            )
        if not isinstance(caps, list):
            continue
        flat = [str(c) for c in caps]
        unknown = [c for c in flat if c not in _KNOWN]
        if unknown:
            yield at(
                (*here, "capabilities"),
                f"unknown capabilities: {', '.join(unknown)}",
                f"use gpu and any of {', '.join(sorted(CAPABILITIES))}",
            )
        driver_caps = [c for c in flat if c in CAPABILITIES]
        lost = [c for c in ("compute", "utility") if c not in driver_caps]
        if driver_caps and lost:
            what = {"compute": "CUDA (compute)", "utility": "nvidia-smi and NVML (utility)"}
            uses_smi = any(w in _command_text(svc) for w in ("nvidia-smi", "nvml", "pynvml"))
            yield at(
                (*here, "capabilities"),
                f"capabilities {flat} become NVIDIA_DRIVER_CAPABILITIES={','.join(driver_caps)}: "
                f"{' and '.join(what[c] for c in lost)} missing",
                f"add {', '.join(lost)}: {sorted({*flat, *lost})}",
                severity="warning" if "compute" in lost or uses_smi or require_utility else "info",
            )


def _command_text(svc: Service) -> str:
    parts = [str(svc.data.get(k, "")) for k in ("command", "entrypoint", "healthcheck")]
    return " ".join(parts).lower()


def check(ctx: LintContext, options: RuleOptions) -> Iterator[Problem]:
    for svc in ctx.compose:
        yield from _service_findings(svc, options["require_utility"] is True)
