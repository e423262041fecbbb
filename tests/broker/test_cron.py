"""Scheduled runs: on time while up, caught up once after downtime within catch_up, else
reported missed; never twice at once; a crash between firing and marking cannot double it."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from gpuherd.broker.clock import Clock
from gpuherd.broker.cron import Fire, Missed, Schedule, due, latest_due
from gpuherd.broker.engine import Engine
from gpuherd.broker.journal import Journal
from gpuherd.gpu.sim import SimBackend
from gpuherd.spec import parse_config
from tests.conftest import gpuherd_argv

UTC = ZoneInfo("UTC")
NIGHTLY = Schedule("render", "0 4 * * *", catch_up=2 * 3600)


def at(text: str, tz: ZoneInfo = UTC) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


def test_latest_due_includes_the_exact_minute_and_follows_the_zone() -> None:
    assert latest_due("0 4 * * *", at("2026-11-22T04:00:00"), "UTC") == at("2026-11-22T04:00:00")
    assert latest_due("0 4 * * *", at("2026-11-22T03:59:59"), "UTC") == at("2026-11-21T04:00:00")
    berlin = ZoneInfo("Europe/Berlin")
    now = at("2026-07-01T04:30:00", berlin)
    assert latest_due("0 4 * * *", now, "Europe/Berlin") == at("2026-07-01T04:00:00", berlin)


def test_a_new_schedule_only_records_and_an_on_time_run_fires() -> None:
    up = at("2026-11-21T12:00:00")
    fired, marks = due([NIGHTLY], {}, now=at("2026-11-21T13:00:00"), up_since=up, tz="UTC")
    assert fired == []  # the 04:00 already past is not run because the schedule is new
    assert marks == {"render": at("2026-11-21T04:00:00")}
    # The broker stays up; at 04:00:00.4 the next morning it fires.
    fired, marks = due([NIGHTLY], marks, now=at("2026-11-22T04:00:00.4"), up_since=up, tz="UTC")
    assert fired == [Fire("render", at("2026-11-22T04:00:00"), caught_up=False)]
    again, same = due([NIGHTLY], marks, now=at("2026-11-22T04:00:01"), up_since=up, tz="UTC")
    assert again == []  # once per fire time
    assert same == marks
    # A long restore held the loop for 20 minutes: still a normal, late run (the broker was up).
    late, _ = due([NIGHTLY], {"render": at("2026-11-21T04:00:00")}, now=at("2026-11-22T04:20:00"),
                  up_since=up, tz="UTC")  # fmt: skip
    assert late == [Fire("render", at("2026-11-22T04:00:00"), caught_up=False)]


def test_missed_while_down_catches_up_once_within_the_window_else_reports() -> None:
    marks = {"render": at("2026-11-19T04:00:00")}  # down since before the 20th's run
    # Back at 05:30 on the 22nd: three runs were missed; one runs, 1.5 h late < 2 h catch_up.
    back = at("2026-11-22T05:30:00")
    fired, new = due([NIGHTLY], marks, now=back, up_since=back, tz="UTC")
    assert fired == [Fire("render", at("2026-11-22T04:00:00"), caught_up=True)]
    assert new == {"render": at("2026-11-22T04:00:00")}
    # Back at noon instead: too late for a nightly render.
    noon = at("2026-11-22T12:00:00")
    (missed,) = due([NIGHTLY], marks, now=noon, up_since=noon, tz="UTC")[0]
    assert isinstance(missed, Missed)
    assert missed.reason == "missed while the broker was down (catch_up is 7200s, 28800s late)"
    no_window = Schedule("render", "0 4 * * *", catch_up=None)
    (missed,) = due([no_window], marks, now=back, up_since=back, tz="UTC")[0]
    assert isinstance(missed, Missed)
    assert "no catch_up set" in missed.reason


def engine_at(clock: list[float], sim_dir: Path, state: Path, up_since: float) -> Engine:
    hold = ", ".join(f"'{a}'" for a in gpuherd_argv("sim", "hold", "--sim-dir", str(sim_dir)))
    text = f"""\
version: 1
timezone: UTC
gpus: [{{name: gpu0, index: 0}}]
jobs:
  render:
    gpu: gpu0
    vram: 1GiB
    schedule: "0 4 * * *"
    catch_up: 2h
    timeout: 72h  # the test moves the clock by days
    command: [{hold}, '--vram', '1GiB', '--for', '60s']
"""
    return Engine(
        config=parse_config(text, source="gpuherd.yaml"),
        backend=SimBackend(sim_dir),
        journal=Journal(state / "journal.db", clock=lambda: clock[0]),
        state_dir=state,
        clock=Clock(now=lambda: clock[0]),
        up_since=up_since,
        poll=0.05,
    )


def test_the_engine_fires_catches_up_and_never_doubles(sim_dir: Path, tmp_path: Path) -> None:
    clock = [at("2026-11-21T12:00:00")]
    engine = engine_at(clock, sim_dir, tmp_path, up_since=clock[0])
    engine.step()
    assert engine.journal.jobs(include_ended=True) == []  # a new schedule records only
    clock[0] = at("2026-11-22T04:00:00.5")
    engine.step()
    (run,) = engine.journal.jobs()
    assert (run.submission.job, run.submission.scheduled_for) == (
        "render",
        at("2026-11-22T04:00:00"),
    )
    assert run.state == "running"
    # The next morning the first run is still going: no second run at once.
    clock[0] = at("2026-11-23T04:00:00.5")
    engine.step()
    assert [j.id for j in engine.journal.jobs()] == [run.id]
    skipped = [e.message for e in engine.journal.events() if e.kind == "schedule_skipped"]
    assert skipped == ["render at 2026-11-23 04:00: the previous run is still active"]
    engine.request_cancel(run.id)
    engine.step()
    engine.journal.close()
    # The broker was down over the 24th's run and comes back 1 h late: caught up, once.
    clock[0] = at("2026-11-24T05:00:00")
    restarted = engine_at(clock, sim_dir, tmp_path, up_since=clock[0])
    restarted.replay()
    restarted.step()
    restarted.step()
    fired = [e.message for e in restarted.journal.events() if e.kind == "schedule_fired"]
    assert fired == [
        "render at 2026-11-22 04:00, on schedule",
        "render at 2026-11-24 04:00, caught up after a broker restart",
    ]
    for job in restarted.journal.jobs():
        restarted.request_cancel(job.id)
    restarted.step()
    assert restarted.journal.jobs() == []
