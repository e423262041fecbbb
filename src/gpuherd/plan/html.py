"""One self-contained HTML page: a stacked-area chart per GPU (inline SVG), tables, findings.

No scripts, no fonts or styles from elsewhere: the file opens offline, in a mail attachment or a
CI artifact, exactly as written.
"""

from __future__ import annotations

from html import escape

from gpuherd.plan.report import GpuPlan, Plan, when
from gpuherd.units import format_bytes

WIDTH, HEIGHT, LEFT, TOP = 1008, 260, 60, 20
_COLOURS = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:22px}h2{font-size:18px;margin-top:32px}
table{border-collapse:collapse;margin:8px 0}td,th{padding:3px 10px;border-bottom:1px solid #ddd;
text-align:left;font-size:13px}.fits{color:#2e7d32}.fits-typical{color:#b26a00}
.needs-preemption{color:#0277bd}.over{color:#c62828}.warning{color:#b26a00}.error{color:#c62828}
.legend span{display:inline-block;margin-right:14px;font-size:13px}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}
"""


def _chart(plan: GpuPlan, minutes: int) -> str:
    names: list[str] = []
    for seg in plan.segments:
        for m in seg.members:
            if m.name not in names:
                names.append(m.name)
    top = max(plan.peak, plan.capacity) * 1.1 or 1
    sx = WIDTH / minutes

    def y(value: float) -> float:
        return TOP + HEIGHT - value / top * HEIGHT

    shapes = []
    base = [0] * len(plan.segments)
    for i, name in enumerate(names):
        upper = [
            b + sum(m.peak for m in s.members if m.name == name)
            for b, s in zip(base, plan.segments, strict=True)
        ]
        points = []
        for s, u in zip(plan.segments, upper, strict=True):
            points += [(LEFT + s.start * sx, y(u)), (LEFT + s.end * sx, y(u))]
        for s, b in reversed(list(zip(plan.segments, base, strict=True))):
            points += [(LEFT + s.end * sx, y(b)), (LEFT + s.start * sx, y(b))]
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        shapes.append(
            f'<polygon points="{path}" fill="{_COLOURS[i % len(_COLOURS)]}" '
            f'fill-opacity="0.85"><title>{escape(name)}</title></polygon>'
        )
        base = upper
    cap = y(plan.capacity)
    days = "".join(
        f'<line x1="{LEFT + d * 1440 * sx:.1f}" y1="{TOP}" x2="{LEFT + d * 1440 * sx:.1f}" '
        f'y2="{TOP + HEIGHT}" stroke="#ccc"/><text x="{LEFT + (d * 1440 + 720) * sx:.1f}" '
        f'y="{TOP + HEIGHT + 16}" font-size="12" text-anchor="middle">'
        f"{('Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun')[d]}</text>"
        for d in range(7)
    )
    legend = "".join(
        f'<span><i style="background:{_COLOURS[i % len(_COLOURS)]}"></i>{escape(n)}</span>'
        for i, n in enumerate(names)
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{LEFT + WIDTH + 20}" '
        f'height="{TOP + HEIGHT + 30}" role="img" '
        f'aria-label="VRAM demand of {escape(plan.gpu.name)}">'
        f'<rect x="{LEFT}" y="{TOP}" width="{WIDTH}" height="{HEIGHT}" fill="#fafafa"/>{days}'
        + "".join(shapes)
        + f'<line x1="{LEFT}" y1="{cap:.1f}" x2="{LEFT + WIDTH}" y2="{cap:.1f}" stroke="#c62828" '
        f'stroke-width="2" stroke-dasharray="6 4"/><text x="{LEFT - 6}" y="{cap + 4:.1f}" '
        f'font-size="11" text-anchor="end">{escape(format_bytes(plan.capacity))}</text></svg>'
        f'<div class="legend">{legend}<span>- - capacity</span></div>'
    )


def render_html(plan: Plan) -> str:
    parts = [
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>gpuherd plan</title>"
        f"<style>{_STYLE}</style></head><body><h1>gpuherd plan: week of "
        f"{plan.week.start:%Y-%m-%d} ({escape(str(plan.week.tz))})</h1>"
    ]
    for g in plan.gpus:
        where = f" on {escape(g.gpu.node)}" if g.gpu.node else ""
        parts.append(
            f"<h2>{escape(g.gpu.name)}{where}: <span class='{g.verdict}'>{g.verdict}</span></h2>"
            f"<p>capacity {format_bytes(g.capacity)}, peak {format_bytes(g.peak)}, typical peak "
            f"{format_bytes(g.typical_peak)}</p>{_chart(g, plan.week.minutes)}"
            "<table><tr><th>when</th><th>peak</th><th>members</th></tr>"
        )
        for seg in g.peak_segments()[:14]:
            span = when(plan.week, seg.start, seg.end)
            members = ", ".join(f"{escape(m.name)} {format_bytes(m.peak)}" for m in seg.members)
            parts.append(
                f"<tr><td>{span['start']} - {span['end']}</td>"
                f"<td>{format_bytes(seg.peak)}</td><td>{members}</td></tr>"
            )
        parts.append("</table>")
        for pre in g.preemptions:
            parts.append(
                f"<p>{escape(pre.job)} needs {escape(', '.join(pre.victims))} released, "
                f"{pre.minutes} minutes a week</p>"
            )
    if plan.findings:
        parts.append("<h2>Findings</h2><table>")
        parts += [
            f"<tr><td class='{f.severity}'>{f.severity}</td><td>{escape(f.id)}</td>"
            f"<td>{escape(f.message)}</td></tr>"
            for f in plan.findings
        ]
        parts.append("</table>")
    parts.append("</body></html>")
    return "".join(parts)
