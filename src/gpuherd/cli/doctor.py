"""`gpuherd doctor`: is this host or container really on the GPU? If not, why, and the fix."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gpuherd.cli.common import Exit, fail, stdout, write_out

if TYPE_CHECKING:
    from gpuherd.doctor.model import Report

_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


class Format(StrEnum):
    text = "text"
    json = "json"


def render_text(report: Report) -> None:
    from rich.text import Text

    stdout.print(
        f"gpuherd doctor: {report.mode}"
        + (f" ({'; '.join(report.mode_evidence)})" if report.mode_evidence else ""),
        markup=False,
    )
    width = max(len(c.id) for c in report.checks)
    for check in report.checks:
        line = Text("  ")
        line.append(f"{check.status:<4}", style=_STYLE[check.status])
        line.append(f"  {check.id:<{width}}  {check.message}")
        stdout.print(line)
        if check.fix and check.status in ("fail", "warn"):
            stdout.print(Text(f"{'':<{width + 10}}fix: {check.fix}", style="cyan"))
    style = {"ready": "bold green", "degraded": "bold yellow", "not-ready": "bold red"}
    stdout.print(Text(report.headline, style=style[report.verdict]))


def doctor(
    host: Annotated[bool, typer.Option("--host", help="Judge as a host (skip detection).")] = False,
    container: Annotated[
        bool, typer.Option("--container", help="Judge as a container (skip detection).")
    ] = False,
    need: Annotated[
        str | None,
        typer.Option(
            "--need",
            help="Capabilities the workload needs, comma-separated: compute, "
            "utility, video, graphics, display, compat32, ngx (default: inferred from "
            "installed software).",
        ),
    ] = None,
    probe: Annotated[
        bool,
        typer.Option(
            "--probe", help="Also create a real EGL/OpenGL context and report which device renders."
        ),
    ] = False,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="text or json.")] = Format.text,
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
    brief: Annotated[
        bool,
        typer.Option(
            "--brief",
            help="Print one line for a status page, e.g. `GPU ready: 1x NVIDIA RTX 4000 Ada "
            "Generation (20 GiB), driver 570.86, CUDA 12.8, runtime nvidia (containerd)`; "
            "same exit codes.",
        ),
    ] = False,
    root: Annotated[
        Path,
        typer.Option(
            "--root",
            help="Read files under DIR instead of / (a captured tree); the "
            "environment then comes from DIR/proc/self/environ when present.",
        ),
    ] = Path("/"),
) -> None:
    """Check that this host or container really gets the GPU; name each problem and its fix."""
    from gpuherd.doctor.run import run_doctor
    from gpuherd.runtimecfg.nvenv import CAPABILITIES

    if host and container:
        fail("give at most one of --host and --container")
    wanted: set[str] | None = None
    if need is not None:
        wanted = {t.strip() for t in need.split(",") if t.strip()}
        unknown = sorted(wanted - CAPABILITIES - {"all"})
        if unknown:
            fail(
                f"--need: unknown capability {', '.join(unknown)}",
                hint=f"choose from {', '.join(sorted(CAPABILITIES))}",
            )
        if "all" in wanted:
            wanted = set(CAPABILITIES)
    if not root.is_dir():
        fail(f"--root {root}: not a directory")
    if brief and (fmt is Format.json or as_json):
        fail("give --brief or --json, not both")
    report = run_doctor(
        root=root.resolve(),
        mode="host" if host else "container" if container else "auto",
        need=wanted,
        probe=probe,
    )
    if brief:
        write_out(report.brief)
    elif fmt is Format.json or as_json:
        write_out(json.dumps(report.as_dict(), indent=2))
    else:
        render_text(report)
    raise typer.Exit(int(Exit.OK if report.verdict == "ready" else Exit.FAILED))
