"""`gpuherd gpus`: who holds which GPU memory right now."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gpuherd.cli.common import (
    BackendOpt,
    ConfigOpt,
    SimDirOpt,
    open_backend_or_exit,
    stdout,
    write_out,
)
from gpuherd.units import format_bytes

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.text import Text

_BAR_WIDTH = 24


def _bar(used: int, total: int) -> Text:
    from rich.text import Text

    share = used / total if total else 0.0
    filled = round(share * _BAR_WIDTH)
    style = "green" if share < 0.75 else ("yellow" if share < 0.9 else "red")
    text = Text("█" * filled, style=style)
    text.append("░" * (_BAR_WIDTH - filled), style="dim")
    return text


def _pct(value: int | None) -> str:
    return "-" if value is None else f"{value}%"


def render(data: dict[str, Any]) -> RenderableType:
    """Tables from the `gpus --json` structure, so text and JSON never disagree."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list[RenderableType] = []
    for gpu in data["gpus"]:
        mem = gpu["memory"]
        label = f"GPU {gpu['index']}"
        if gpu["config_name"]:
            label += f" ({gpu['config_name']})"
        head = Text.assemble(
            (label, "bold"),
            f"  {gpu['name']}  ",
            _bar(mem["used"], mem["total"]),
            f"  {format_bytes(mem['used'])} / {format_bytes(mem['total'])}",
            f"  free {format_bytes(mem['free'])}  util {_pct(gpu['utilization'])}",
        )
        if gpu["temperature"] is not None:
            head.append(f"  {gpu['temperature']}°C")
        table = Table(box=None, pad_edge=False, show_edge=False, header_style="dim")
        for column, justify in (
            ("PID", "right"),
            ("TENANT", "left"),
            ("PROCESS", "left"),
            ("CONTAINER / POD", "left"),
            ("MEMORY", "right"),
        ):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        for proc in gpu["processes"]:
            where = proc["pod"] or (proc["container"] or "")[:12] or proc["systemd_unit"] or "-"
            table.add_row(
                str(proc["pid"]),
                proc["tenant"] or "-",
                proc["name"] or "?",
                where,
                format_bytes(proc["used_bytes"]),
            )
        parts.append(head)
        parts.append(table if gpu["processes"] else Text("  no processes", style="dim"))
        parts.append(Text(""))
    footer = f"backend {data['backend']}"
    if data["driver_version"]:
        footer += f", driver {data['driver_version']}"
    if data["cuda_version"]:
        footer += f", CUDA {data['cuda_version']}"
    parts.append(Text(footer, style="dim"))
    return Group(*parts)


def gpus(
    config: ConfigOpt = None,
    backend: BackendOpt = "auto",
    sim_dir: SimDirOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (schema in docs/cli.md).")
    ] = False,
    watch: Annotated[
        float | None,
        typer.Option(
            "--watch",
            "-w",
            help="Redraw every SECONDS (default 2 when given without a value) until Ctrl-C.",
            metavar="[SECONDS]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Show each GPU's memory and the processes holding it, with their tenant, container or pod."""
    from rich.live import Live

    from gpuherd.cli.common import load_config_or_exit
    from gpuherd.gpu.attribution import attribute
    from gpuherd.gpu.report import snapshot_dict
    from gpuherd.spec import Config

    declared: Config | None = load_config_or_exit(config) if config is not None else None
    source = open_backend_or_exit(backend, sim_dir)
    tenants = declared.tenants if declared is not None else {}
    names = (
        {g.index: g.name for g in (declared.gpus or []) if g.index is not None and g.node is None}
        if declared is not None
        else {}
    )

    def read() -> dict[str, Any]:
        snap = source.snapshot()
        return snapshot_dict(snap, attribute(snap, tenants), gpu_names=names)

    try:
        if watch is None:
            data = read()
            if as_json:
                write_out(json.dumps(data, indent=2))
            else:
                stdout.print(render(data))
            return
        interval = max(watch, 0.1)
        with Live(render(read()), console=stdout, auto_refresh=False) as live:
            while True:
                time.sleep(interval)
                live.update(render(read()), refresh=True)
    except KeyboardInterrupt:
        pass
    finally:
        source.close()
