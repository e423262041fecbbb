"""`gpuherd validate`: check a gpuherd.yaml and summarise what it declares."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from gpuherd.cli.common import load_config_or_exit, stdout
from gpuherd.units import format_bytes, format_duration


def validate(
    config: Annotated[
        Path,
        typer.Option("--config", "-c", envvar="GPUHERD_CONFIG", help="gpuherd.yaml to check."),
    ] = Path("gpuherd.yaml"),
) -> None:
    """Validate gpuherd.yaml; print a summary, or FILE:LINE:COL problems and exit 2."""
    from gpuherd.actuators.factory import ALL_MODES, unavailable_kinds

    declared = load_config_or_exit(config, methods=unavailable_kinds(modes=ALL_MODES))
    stdout.print(f"[bold]{config}[/]: valid (version {declared.version})")
    gpus = Table(title="GPUs", title_justify="left", box=None, header_style="dim")
    for col in ("NAME", "WHERE", "MODEL", "MEMORY", "RESERVE", "SHARES"):
        gpus.add_column(col)
    if declared.gpus is None:
        stdout.print("GPUs: auto (every GPU the backend finds, named gpu0, gpu1, ...)")
    else:
        for g in declared.gpus:
            where = g.uuid or (f"index {g.index}" if g.index is not None else "-")
            if g.node:
                where = f"{g.node}: {where}"
            gpus.add_row(
                g.name,
                where,
                g.model or "-",
                format_bytes(g.memory),
                format_bytes(g.reserve),
                str(g.shares),
            )
        stdout.print(gpus)
    tenants = Table(title="Tenants", title_justify="left", box=None, header_style="dim")
    for col in ("NAME", "GPU", "VRAM TYPICAL/PEAK", "PRIORITY", "PREEMPT", "ACTIVE"):
        tenants.add_column(col)
    for tname, t in declared.tenants.items():
        how = ", ".join(m.kind for m in t.preempt) if t.preemptible else "never"
        if t.preemptible and not t.preempt:
            how = "none declared"
        active = (
            "always"
            if t.active is None
            else "; ".join(f"{w.cron} for {format_duration(w.for_)}" for w in t.active)
        )
        tenants.add_row(
            tname,
            t.gpu or "(placed)",
            f"{t.vram.typical} / {t.vram.peak_amount}",
            str(t.priority),
            how,
            active,
        )
    stdout.print(tenants)
    jobs = Table(title="Jobs", title_justify="left", box=None, header_style="dim")
    for col in ("NAME", "GPU", "VRAM", "PRIORITY", "SCHEDULE", "TIMEOUT"):
        jobs.add_column(col)
    for name, j in declared.jobs.items():
        jobs.add_row(
            name,
            j.gpu or "(placed)",
            str(j.vram),
            str(j.priority),
            j.schedule or "on submit",
            format_duration(j.timeout),
        )
    stdout.print(jobs)
    total = sum(g.memory or 0 for g in declared.gpus or [])
    if total:
        stdout.print(
            f"[dim]{len(declared.gpus or [])} GPUs, {format_bytes(total)} declared; "
            f"{len(declared.tenants)} tenants; {len(declared.jobs)} jobs[/]"
        )
