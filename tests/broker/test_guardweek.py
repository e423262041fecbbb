"""`gpuherd plan`'s view of the headroom guard: whom it would release over the week, and when,
from the activity windows (seed 001's card: Plex evenings, Whisper office hours, Ollama)."""

from __future__ import annotations

import json
import subprocess
from datetime import date
from pathlib import Path

from gpuherd.broker.guardweek import guard_week
from gpuherd.plan.demand import make_week
from gpuherd.spec.load import parse_config
from tests.conftest import gpuherd_argv

CONFIG = """\
version: 1
timezone: UTC
gpus: [{name: gpu0, index: 0, memory: 12GiB, guard: {min_free: 2GiB, restore_above: 1GiB}}]
tenants:
  plex:
    gpu: gpu0
    vram: {typical: 512MiB, peak: 3584MiB}
    priority: 100
    preemptible: false
    headroom: 1GiB
    active: [{cron: "0 18 * * *", for: 5h}]
  whisper:
    gpu: gpu0
    vram: 3GiB
    priority: 50
    active: [{cron: "0 9 * * 1-5", for: 8h}]
    preempt: [{signal: {}}]
  ollama:
    gpu: gpu0
    vram: OLLAMA
    priority: 10
    preemptible: PREEMPTIBLE
    active: [{cron: "0 7 * * *", for: 1h}]
    preempt: [{ollama: {url: "http://127.0.0.1:11434"}}]
"""
MONDAY = date(2026, 12, 7)


def week_of(text: str) -> dict[str, list[tuple[int, int]]]:
    config = parse_config(text, source="gpuherd.yaml")
    (result,) = guard_week(config, make_week(config, MONDAY))
    return {**result.released, "short": result.short}


def test_ollama_is_released_every_evening_while_plex_transcodes() -> None:
    found = week_of(CONFIG.replace("OLLAMA", "5GiB").replace("PREEMPTIBLE", "true"))
    evenings = [(day * 1440 + 18 * 60, day * 1440 + 23 * 60) for day in range(7)]
    # 0.5 + 3 + 5 held, plex grows by 3 GiB: 0.5 GiB free, 2 GiB kept. Ollama (idle in the
    # evening, lowest priority) covers it; at 23:00 8.5 GiB is free, 5 + 2 + 1 are needed.
    assert found == {"ollama": evenings, "short": []}


def test_the_lowest_priority_that_suffices_and_short_when_nothing_may_go() -> None:
    # With a 7 GiB whisper, a 1 GiB Ollama cannot cover the 1.5 GiB missing: whisper (idle in
    # the evening) goes, and comes back at 23:00 (10.5 GiB free, 7 + 2 + 1 needed).
    text = CONFIG.replace("OLLAMA", "1GiB").replace("PREEMPTIBLE", "true")
    found = week_of(text.replace("vram: 3GiB", "vram: 7GiB"))
    assert set(found) == {"whisper", "short"}
    assert found["whisper"] == [(day * 1440 + 18 * 60, day * 1440 + 23 * 60) for day in range(7)]
    # Nothing may be released: the evenings are short of room.
    text = CONFIG.replace("OLLAMA", "5GiB").replace("PREEMPTIBLE", "false")
    text = text.replace("    preempt: [{signal: {}}]\n", "")
    found = week_of(text)
    assert set(found) == {"short"}
    assert found["short"][0] == (18 * 60, 23 * 60)


def test_plan_json_and_text_show_the_guard(tmp_path: Path) -> None:
    cfg = tmp_path / "gpuherd.yaml"
    cfg.write_text(CONFIG.replace("OLLAMA", "5GiB").replace("PREEMPTIBLE", "true"))
    argv = gpuherd_argv("plan", "-c", str(cfg), "--week-start", MONDAY.isoformat())
    done = subprocess.run([*argv, "-f", "json"], capture_output=True, text=True, check=False)
    (guard,) = json.loads(done.stdout)["guard"]
    (ollama,) = guard["releases"]
    assert (ollama["tenant"], ollama["times_per_week"], ollama["minutes_per_week"]) == (
        "ollama",
        7,
        7 * 300,
    )
    assert ollama["when"][0]["start"] == "Mon 18:00"
    text = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
    assert "gpu0 guard: releases ollama 7x a week" in text
