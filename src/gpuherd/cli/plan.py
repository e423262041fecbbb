"""`gpuherd plan`: do the tenants and jobs fit in VRAM, and when do they collide?"""

from __future__ import annotations

import json
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gpuherd.cli.common import (
    Exit,
    fail,
    finish_batch,
    load_config_or_exit,
    start_batch,
    stderr,
    stdout,
    write_out,
)

if TYPE_CHECKING:
    from gpuherd.plan.report import GpuPlan, Plan
    from gpuherd.spec import Config

_SPARK = " ▁▂▃▄▅▆▇█"
_VERDICT_STYLE = {
    "fits": "green",
    "fits-typical": "yellow",
    "needs-preemption": "cyan",
    "over": "bold red",
}


class Format(StrEnum):
    text = "text"
    json = "json"
    html = "html"


class Sharing(StrEnum):
    shared = "shared"
    hami = "hami"
    kai = "kai"


def _strip(plan: GpuPlan) -> list[str]:
    """7 rows (days) x 48 half-hours: demand / capacity as a bar, '!' above capacity."""
    rows = []
    for day in range(7):
        cells = []
        for slot in range(48):
            minute = day * 1440 + slot * 30
            peak = max(
                (s.peak for s in plan.segments if s.start < minute + 30 and s.end > minute),
                default=0,
            )
            if peak > plan.capacity:
                cells.append("[red]![/]")
            else:
                level = round(peak / plan.capacity * (len(_SPARK) - 1)) if plan.capacity else 0
                cells.append(_SPARK[level])
        rows.append(f"  {('Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun')[day]} " + "".join(cells))
    return rows


def render_text(plan: Plan) -> None:
    from rich.table import Table

    from gpuherd.plan.report import when
    from gpuherd.units import format_bytes, format_duration

    for g in plan.gpus:
        style = _VERDICT_STYLE[g.verdict]
        where = f" on {g.gpu.node}" if g.gpu.node else ""
        stdout.print(
            f"[bold]{g.gpu.name}[/]{where}: capacity {format_bytes(g.capacity)}, peak "
            f"{format_bytes(g.peak)} (typical {format_bytes(g.typical_peak)}): "
            f"[{style}]{g.verdict}[/]"
        )
        table = Table(box=None, header_style="dim", pad_edge=False)
        for col in ("WHEN", "PEAK", "MEMBERS"):
            table.add_column(col)
        for seg in g.peak_segments()[:8]:
            span = when(plan.week, seg.start, seg.end)
            members = ", ".join(f"{m.name} {format_bytes(m.peak)}" for m in seg.members)
            table.add_row(
                f"{span['start']}-{span['end'].split(' ')[1]}", format_bytes(seg.peak), members
            )
        stdout.print(table)
        if len(g.peak_segments()) > 8:
            stdout.print(f"  [dim]... {len(g.peak_segments()) - 8} more occurrences[/]")
        for pre in g.preemptions:
            stdout.print(
                f"  {pre.job} needs {', '.join(pre.victims)} released, "
                f"{format_duration(pre.minutes * 60)} a week"
            )
        stdout.print("  [dim]demand vs capacity, 30-minute columns from 00:00:[/]")
        for row in _strip(g):
            stdout.print(row)
        stdout.print("")
    for f in plan.findings:
        stdout.print(f"{f.severity}: {f.id}: {f.message}", markup=False)


def _render_guard(guards: list[dict[str, Any]]) -> None:
    """The headroom guard's week: whom it releases, how often, and when."""
    from gpuherd.units import format_duration

    for g in guards:
        if not g["releases"] and not g["short"]:
            stdout.print(f"{g['gpu']} guard: never releases a tenant this week", markup=False)
            continue
        for r in g["releases"]:
            spans = ", ".join(f"{w['start']}-{w['end'].split(' ')[1]}" for w in r["when"][:4])
            more = f" (+{len(r['when']) - 4} more)" if len(r["when"]) > 4 else ""
            stdout.print(
                f"{g['gpu']} guard: releases {r['tenant']} {r['times_per_week']}x a week, "
                f"{format_duration(r['minutes_per_week'] * 60)} down: {spans}{more}",
                markup=False,
            )
        if g["short"]:
            spans = ", ".join(f"{w['start']}-{w['end'].split(' ')[1]}" for w in g["short"][:4])
            stdout.print(
                f"{g['gpu']} guard: cannot keep min_free (nothing idle to release): {spans}",
                markup=False,
            )


def _cluster_docs(kubeconfig: Path | None, context: str | None, base: Config | None) -> list[Any]:
    """The live GPU workloads and the Nodes, as `--from-k8s` reads them from files."""
    from gpuherd.cli.cluster import read_or_exit
    from gpuherd.spec.from_k8s import gpus_from_nodes, node_gpu_capacity

    snapshot = read_or_exit(
        "--from-cluster", kubeconfig=kubeconfig, context=context, facts=("nodes",)
    )
    from gpuherd.k8s.live import planner_docs  # the client is there: read_or_exit checked

    docs = planner_docs(snapshot)
    if base is not None and base.gpus:
        return docs
    labelled = {g["node"] for g in gpus_from_nodes(docs)}
    unlabelled = [
        str(n["metadata"]["name"])
        for n in snapshot.of_kind("Node")
        if node_gpu_capacity(n) and n["metadata"]["name"] not in labelled
    ]
    if unlabelled:
        stderr.print(
            f"nodes with GPUs but no nvidia.com/gpu.memory label (GPU Feature Discovery), left "
            f"out: {', '.join(unlabelled)}; declare their GPUs in -c",
            markup=False,
        )
    if not labelled:
        fail(
            f"--from-cluster: no Node of {snapshot.server} has GPUs labelled with "
            "nvidia.com/gpu.memory",
            hint="run GPU Feature Discovery, or declare the GPUs in -c",
        )
    return docs


def _load(
    config: Path | None,
    manifests: list[Path],
    *,
    from_cluster: bool = False,
    kubeconfig: Path | None = None,
    context: str | None = None,
) -> Config:
    from pydantic import ValidationError

    from gpuherd.plan.k8s_input import ManifestError, merged_config, read_manifests
    from gpuherd.spec import Config

    if not manifests and not from_cluster:
        return load_config_or_exit(config or Path("gpuherd.yaml"))
    base = load_config_or_exit(config) if config is not None else None
    flag = "--from-cluster" if from_cluster else "--from-k8s"
    try:
        if from_cluster:
            docs = _cluster_docs(kubeconfig, context, base)
        else:
            docs = read_manifests(manifests)
        data = merged_config(base, docs)
        return Config.model_validate(data)
    except ManifestError as exc:
        fail(str(exc))
    except (ValidationError, ValueError) as exc:
        fail(f"{flag}: the derived tenants do not validate: {str(exc).splitlines()[0]}")


def plan(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            envvar="GPUHERD_CONFIG",
            help="gpuherd.yaml (default: ./gpuherd.yaml; optional with --from-k8s and "
            "--from-cluster).",
            show_default=False,
        ),
    ] = None,
    from_k8s: Annotated[
        list[Path] | None,
        typer.Option(
            "--from-k8s",
            help="Manifests (files or directories) to derive tenants "
            "from (gpuherd.io/vram, /priority, /active annotations, vLLM args, HAMi and "
            "KAI requests) and, without -c, GPUs from labelled Nodes. Repeatable.",
            show_default=False,
        ),
    ] = None,
    from_cluster: Annotated[
        bool,
        typer.Option(
            "--from-cluster",
            help="Derive tenants from the live GPU workloads of a Kubernetes cluster (as "
            "--from-k8s does from manifests) and, without GPUs in -c, GPUs from its Nodes.",
        ),
    ] = False,
    kubeconfig: Annotated[
        Path | None,
        typer.Option(
            "--kubeconfig",
            help="With --from-cluster: the kubeconfig (default: $KUBECONFIG, then "
            "~/.kube/config; in a pod, its service account).",
            show_default=False,
        ),
    ] = None,
    context: Annotated[
        str | None,
        typer.Option(
            "--context",
            help="With --from-cluster: the kubeconfig context (default: its current one).",
            show_default=False,
        ),
    ] = None,
    fmt: Annotated[
        Format,
        typer.Option(
            "--format",
            "-f",
            help="text, json, or html (one self-contained "
            "page with a chart per GPU; redirect it to a file).",
        ),
    ] = Format.text,
    emit: Annotated[
        str | None,
        typer.Option(
            "--emit",
            help="Write configs: device-plugin, k8s, vllm, ollama (comma-separated) into --out.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Directory for --emit.")] = Path(
        "gpuherd-plan"
    ),
    sharing: Annotated[
        Sharing,
        typer.Option(
            "--sharing",
            help="How k8s snippets ask for GPU memory: shared "
            "(time-slice replicas), hami (nvidia.com/gpumem) or kai "
            "(gpu-memory annotation).",
        ),
    ] = Sharing.shared,
    week_start: Annotated[
        str | None,
        typer.Option(
            "--week-start",
            help="Monday to plan (YYYY-MM-DD); default: next Monday.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Check whether tenants and jobs fit in VRAM over a week; exit 1 unless every GPU fits."""
    from gpuherd.plan.emit import WHAT, write
    from gpuherd.plan.emit import emit as make_emissions
    from gpuherd.plan.report import make_plan, plan_dict

    wanted = [w.strip() for w in (emit or "").split(",") if w.strip()]
    unknown = sorted(set(wanted) - set(WHAT))
    if unknown:
        fail(f"--emit: unknown {', '.join(unknown)}", hint=f"choose from {', '.join(WHAT)}")
    start: date | None = None
    if week_start is not None:
        try:
            start = date.fromisoformat(week_start)
        except ValueError:
            fail(f"--week-start {week_start!r}: expected a date like 2026-11-23")
        if start.weekday() != 0:
            fail(f"--week-start {week_start}: a week starts on a Monday")
    if from_cluster and from_k8s:
        fail("--from-cluster and --from-k8s: choose one")
    if not from_cluster and (kubeconfig is not None or context is not None):
        fail("--kubeconfig and --context only with --from-cluster")
    start_batch()
    declared = _load(
        config, from_k8s or [], from_cluster=from_cluster, kubeconfig=kubeconfig, context=context
    )
    result = make_plan(declared, week_start=start)
    emitted = make_emissions(declared, result, wanted, sharing.value) if wanted else []
    if emitted:
        try:
            write(emitted, out)
        except OSError as exc:
            fail(f"--out {out}: {exc.strerror or exc}")
    data = plan_dict(result)
    data["emitted"] = [{"path": str(out / e.path), "kind": e.kind} for e in emitted]
    from gpuherd.broker.guardweek import guard_week, guard_week_dict

    data["guard"] = [guard_week_dict(g, result.week) for g in guard_week(declared, result.week)]
    if fmt is Format.json:
        write_out(json.dumps(data, indent=2))
    elif fmt is Format.html:
        from gpuherd.plan.html import render_html

        write_out(render_html(result))
    else:
        render_text(result)
        _render_guard(data["guard"])
        for item in data["emitted"]:
            stdout.print(f"wrote {item['path']} ({item['kind']})", markup=False)
    ok = all(g.verdict == "fits" for g in result.gpus)
    finish_batch(int(Exit.OK if ok else Exit.FAILED))
