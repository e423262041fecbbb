"""The planner: exact numbers for the field reports, schedule edges, DST, and the sweep."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import date
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gpuherd.plan.demand import Interval, Member, make_week, windows
from gpuherd.plan.report import make_plan, plan_dict
from gpuherd.plan.sweep import sweep
from gpuherd.spec import TenantName, parse_config
from tests.conftest import gpuherd_argv

ROOT = Path(__file__).resolve().parents[2]
HOMELAB = (ROOT / "examples" / "homelab.yaml").read_text()
GIB = 1024**3
WEEK = date(2026, 11, 23)  # a Monday without a DST change in Europe/Berlin


def plan_of(text: str, week: date = WEEK) -> dict[str, Any]:
    return plan_dict(make_plan(parse_config(text, source="t.yaml"), week_start=week))


def gpu(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(g for g in data["gpus"] if g["name"] == name)


def test_seed_001_as_written_is_over() -> None:
    g = gpu(plan_of(HOMELAB), "homelabai-3080ti")
    vllm = int(12 * GIB * 0.70)
    assert g["verdict"] == "over"
    assert g["capacity_bytes"] == 12 * GIB - 512 * 1024**2
    assert g["peak_bytes"] == 4 * GIB + 1 * GIB + 3 * GIB + vllm
    assert g["typical_peak_bytes"] == 2 * GIB + 512 * 1024**2 + 2 * GIB + vllm
    assert [(p["start"], p["end"], p["members"]) for p in g["peaks"]] == [
        (f"{day} 08:00", f"{day} 18:00", ["ollama", "tts", "vllm", "whisper"])
        for day in ("Mon", "Tue", "Wed", "Thu", "Fri")
    ]
    assert g["peaks"][0]["start_minute_of_week"] == 480


def test_seed_001_with_recommended_vllm_utilization() -> None:
    findings = plan_of(HOMELAB)["findings"]
    (advice,) = [f for f in findings if f["id"] == "vllm-utilization"]
    assert advice["message"].startswith(
        "vllm: largest safe --gpu-memory-utilization is 0.29 (now 0.7)"
    )
    fixed = HOMELAB.replace("vram: {fraction: 0.70}", "vram: {fraction: 0.29}")
    g = gpu(plan_of(fixed), "homelabai-3080ti")
    assert g["verdict"] == "fits"
    assert g["peak_bytes"] == 8 * GIB + int(12 * GIB * 0.29)


def test_seed_000_render_needs_ollama_released() -> None:
    g = gpu(plan_of(HOMELAB), "gpu01-ada")
    assert g["verdict"] == "needs-preemption"
    assert g["peak_bytes"] == 22 * GIB
    assert g["preemptions"] == [
        {"job": "mapshot-render", "release": ["ollama-ada"], "minutes_per_week": 210}
    ]
    assert len(g["peaks"]) == 7


def test_a_checkpointed_tenant_s_host_ram_and_restore_time_are_estimated() -> None:
    text = HOMELAB.replace(
        '      - ollama: {url: "http://ollama.ollama.svc:11434"}\n',
        "      - checkpoint: {}\n",
    )
    findings = [f for f in plan_of(text)["findings"] if f["id"] == "checkpoint-restore"]
    assert [f["message"] for f in findings] == [
        # Its 16 GiB peak at 5 GB/s + 1 s (17.2 GB / 5 + 1 = 4.4 s): the conservative figure.
        "ollama-ada is moved to host RAM for mapshot-render: 16.0 GiB of host RAM while it "
        "waits, about 4s to put back"
    ]


BASE = """\
version: 1
timezone: Europe/Berlin
gpus: [{name: g, memory: 10GiB}]
tenants:
  night: {gpu: g, vram: 6GiB, priority: 10, active: [{cron: "CRON", for: 3h}]}
jobs:
  batch: {gpu: g, vram: 5GiB, priority: 5, command: [x], schedule: "0 1 * * *", timeout: 1h}
"""


def test_collision_across_midnight_and_a_shift_that_removes_it() -> None:
    data = plan_of(BASE.replace("CRON", "0 23 * * *"))
    g = gpu(data, "g")
    assert g["verdict"] == "over"  # the job outranks nobody it could release
    assert [(p["start"], p["end"]) for p in g["peaks"]][:2] == [
        ("Mon 01:00", "Mon 02:00"),
        ("Tue 01:00", "Tue 02:00"),
    ]
    (shift,) = [f for f in data["findings"] if f["id"] == "schedule-shift"]
    assert shift["message"] == (
        "move batch from 01:00 to 02:00: the peak while it runs drops from "
        "11.0 GiB to 5.0 GiB (capacity 10.0 GiB)"
    )


def test_window_from_the_previous_week_reaches_into_monday() -> None:
    config = parse_config(BASE.replace("CRON", "0 23 * * 0"), source="t.yaml")
    week = make_week(config, WEEK)
    assert windows(week, [("0 23 * * 0", 3 * 3600)]) == [(0, 120), (10020, 10080)]


def test_dst_week_has_a_short_night() -> None:
    config = parse_config(BASE.replace("CRON", "0 1 * * *"), source="t.yaml")
    week = make_week(config, date(2026, 3, 23))  # clocks go forward on Sunday 29 March
    assert week.minutes == 7 * 1440 - 60
    spans = windows(week, [("0 1 * * *", 3 * 3600)])
    sunday = spans[-1]
    assert (week.at(sunday[0]).strftime("%a %H:%M"), week.at(sunday[1]).strftime("%a %H:%M")) == (
        "Sun 01:00",
        "Sun 05:00",  # three real hours, one of them skipped by the clock
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 200), st.integers(1, 60), st.integers(1, 9)), max_size=8))
def test_sweep_peak_equals_minute_sampling(raw: list[tuple[int, int, int]]) -> None:
    intervals = [
        Interval(s, min(s + d, 240), Member(f"m{i}", "tenant", gb, gb, 0, True))
        for i, (s, d, gb) in enumerate(raw)
    ]
    segments = sweep(intervals, 240)
    brute = max(
        (sum(iv.member.peak for iv in intervals if iv.start <= t < iv.end) for t in range(240)),
        default=0,
    )
    assert max((s.peak for s in segments), default=0) == brute
    assert segments[0].start == 0
    assert segments[-1].end == 240


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        gpuherd_argv("plan", *args),
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "120"},
    )


def test_cli(tmp_path: Path) -> None:
    config = tmp_path / "gpuherd.yaml"
    config.write_text(HOMELAB)
    result = run("-c", str(config), "--format", "json", "--week-start", "2026-11-23")
    assert result.returncode == 1
    assert json.loads(result.stdout)["gpus"][0]["verdict"] == "over"
    fits = tmp_path / "fits.yaml"
    fits.write_text(
        "version: 1\ngpus: [{name: g, memory: 8GiB}]\ntenants: {a: {gpu: g, vram: 2GiB}}\n"
    )
    ok = run("-c", str(fits))
    assert ok.returncode == 0, ok.stderr
    assert "g: capacity 8.0 GiB, peak 2.0 GiB (typical 2.0 GiB): fits" in ok.stdout
    assert run("-c", str(fits), "--week-start", "2026-11-24").returncode == 2
    assert run("-c", str(tmp_path / "missing.yaml")).returncode == 2


PLACE = """\
version: 1
timezone: UTC
gpus:
  - {name: a, node: n1, memory: 10GiB}
  - {name: b, node: n2, memory: 10GiB}
tenants:
  big: {vram: 7GiB, priority: 50}
  medium: {vram: 5GiB, priority: 40, anti_affinity: [big]}
  night: {vram: 4GiB, priority: 5, active: [{cron: "0 22 * * *", for: 4h}]}
  day: {vram: 3GiB, priority: 5, node: n1, active: [{cron: "0 8 * * *", for: 8h}]}
  evening: {vram: 4GiB, priority: 4, active: [{cron: "0 16 * * *", for: 4h}]}
  pinned: {gpu: b, vram: 1GiB}
  huge: {vram: 11GiB, priority: 1}
"""


def test_placement_respects_pins_anti_affinity_and_time() -> None:
    data = plan_of(PLACE)
    placed = {p["subject"]: g["name"] for g in data["gpus"] for p in g["placements"]}
    # medium avoids big; night fits only beside medium + pinned on b (6 + 4 = 10 GiB); day is
    # pinned to n1; evening (16-20h) shares b with night (22-02h): 14 GiB declared, 10 at once.
    assert placed == {"big": "a", "medium": "b", "night": "b", "day": "a", "evening": "b"}
    assert {g["name"]: (g["peak_bytes"], g["verdict"]) for g in data["gpus"]} == {
        "a": (10 * GIB, "fits"),
        "b": (10 * GIB, "fits"),
    }
    (unplaced,) = [f for f in data["findings"] if f["id"] == "unplaced"]
    assert unplaced["message"] == "tenant huge: no GPU has room for it at its active times"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 8), st.integers(0, 9), st.booleans()), min_size=1, max_size=12
    )
)
def test_placement_never_exceeds_capacity_and_pins_stay(raw: list[tuple[int, int, bool]]) -> None:
    lines = [
        "version: 1",
        "timezone: UTC",
        "gpus:",
        "  - {name: g0, memory: 8GiB}",
        "  - {name: g1, memory: 8GiB}",
        "tenants:",
    ]
    for i, (gib, prio, pinned) in enumerate(raw):
        where = ", gpu: g1" if pinned and gib <= 2 else ""
        lines.append(f"  t{i}: {{vram: {gib}GiB, priority: {prio}{where}}}")
    config = parse_config("\n".join(lines) + "\n", source="p.yaml")
    plan = make_plan(config, week_start=WEEK)
    pinned_total = sum(t.vram.typical.bytes or 0 for t in config.tenants.values() if t.gpu == "g1")
    for g in plan.gpus:
        if g.gpu.name == "g1" and pinned_total > g.capacity:
            continue  # pins alone overfill it: reported as over, never made worse by placement
        placed_here = sum(
            config.tenants[TenantName(p.subject)].vram.typical.bytes or 0
            for p in plan.placements
            if p.gpu == g.gpu.name
        )
        assert placed_here + (pinned_total if g.gpu.name == "g1" else 0) <= g.capacity
    assert all(
        p.subject not in {n for n, t in config.tenants.items() if t.gpu} for p in plan.placements
    )
