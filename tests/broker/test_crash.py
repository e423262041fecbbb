"""kill -9 the broker at each point of a job's life, restart it, and check that every tenant is
back, no job ran twice, no job is lost, and the events tell what happened."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from gpuherd.broker.journal import Journal
from gpuherd.broker.submission import Submission
from gpuherd.gpu.sim import SimHost
from gpuherd.ids import JobName
from tests.broker.conftest import seed_config
from tests.conftest import GIB, HolderFactory, gpuherd_argv


def story(journal: Journal) -> str:
    return "\n".join(
        f"{e.at:.2f} {e.kind} {e.job_id} {e.tenant} {e.message}" for e in journal.events()
    )


def holders(sim_dir: Path) -> dict[str, int]:
    with SimHost(sim_dir) as host:
        snap = host.snapshot()
    return {p.name or "?": p.used_bytes or 0 for p in snap.processes}


def serve(
    cfg: Path, sim_dir: Path, state: Path, sock: Path, crash: str | None
) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "GPUHERD_CRASH_AT"}
    if crash:
        env["GPUHERD_CRASH_AT"] = crash
    proc = subprocess.Popen(
        gpuherd_argv(
            "serve",
            "-c",
            str(cfg),
            "--backend",
            "sim",
            "--sim-dir",
            str(sim_dir),
            "--state",
            str(state),
            "--socket",
            str(sock),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    if crash is None:  # a crashing broker may die before it listens
        assert json.loads(proc.stdout.readline())["event"] == "listening"
    return proc


@pytest.mark.parametrize(
    "point", ["after_intent", "after_release", "job_running", "after_exit", "mid_restore"]
)
def test_kill_9_and_restart(
    point: str, sim_dir: Path, holder: HolderFactory, ollama: str, tmp_path: Path
) -> None:
    holder("--vram", "2GiB", "--name", "plex")
    holder("--vram", "3GiB", "--name", "whisper")
    cfg = tmp_path / "gpuherd.yaml"
    cfg.write_text(
        seed_config(sim_dir, ollama, render="8GiB", run_for="3s", broker="{poll_interval: 0.1s}")
    )
    state, sock = tmp_path / "state", tmp_path / "gpuherd.sock"
    state.mkdir(mode=0o700)
    journal = Journal(state / "journal.db")  # both queued before the broker's first step
    job_id = journal.submit(Submission(job=JobName("render")))
    queued = journal.submit(Submission(job=JobName("render")))  # waits; must survive the crash
    journal.close()
    first = serve(cfg, sim_dir, state, sock, crash=point)
    assert first.wait(timeout=60) == -9  # killed at the crash point, no cleanup
    second = serve(cfg, sim_dir, state, sock, crash=None)
    try:
        journal = Journal(state / "journal.db")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rows = [journal.job(job_id), journal.job(queued)]
            if (
                all(r is not None and r.state in ("succeeded", "failed") for r in rows)
                and not journal.pending_restores()
            ):
                break
            time.sleep(0.2)
        row = journal.job(job_id)
        assert row is not None
        # Wherever the broker died, the job's outcome is its own: one that never started ran
        # after the restart, one that ran was judged by the exit status it wrote down.
        assert row.state == "succeeded", story(journal)
        events = [e for e in journal.events() if e.job_id == job_id]
        assert [e.kind for e in events].count("job_starting") <= 1  # never started twice
        told = {
            "after_intent": "requeued: the broker stopped before the job started",
            "after_release": "requeued: the broker stopped before the job started",
            "job_running": "job process still runs",
            "after_exit": "ended while the broker was down, exit 0",
            "mid_restore": "job restoring",
        }[point]
        assert any(told in e.message for e in events), [(e.kind, e.message) for e in events]
        second_job = journal.job(queued)
        assert second_job is not None
        assert second_job.state == "succeeded", story(journal)
        assert [e.kind for e in journal.events() if e.job_id == queued].count("job_starting") == 1
        deadline = time.monotonic() + 20
        while holders(sim_dir).get("render") and time.monotonic() < deadline:
            time.sleep(0.2)
        held = holders(sim_dir)
        assert {name: held.get(name) for name in ("plex", "whisper", "ollama")} == {
            "plex": 2 * GIB,
            "whisper": 3 * GIB,
            "ollama": 4 * GIB,
        }  # everyone is back
        assert journal.pending_restores() == []
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
        with SimHost(sim_dir) as host:  # the whisper a restore started is not the fixture's
            for proc in host.snapshot().processes:
                if proc.name == "whisper":
                    os.kill(proc.pid, signal.SIGTERM)


SLOW_START = """\
import os, sys, time
time.sleep(3)  # a model server loading for seconds before it holds any memory
os.execv(sys.argv[1], sys.argv[1:])
"""


def test_a_crash_during_a_slow_restore_never_starts_the_tenant_twice(
    sim_dir: Path, holder: HolderFactory, tmp_path: Path
) -> None:
    """Before, a broker killed while a tenant's start command was still loading started a
    second copy on restart (3 of 3 tries). The started process is journaled before the wait,
    and a restarted broker waits for it instead."""
    holder("--vram", "3GiB", "--name", "whisper")
    starter = tmp_path / "slow_start.py"
    starter.write_text(SLOW_START)
    hold = gpuherd_argv("sim", "hold", "--sim-dir", str(sim_dir))
    start = [hold[0], str(starter), *hold, "--vram", "3GiB", "--name", "whisper"]
    cfg = tmp_path / "gpuherd.yaml"
    cfg.write_text(
        f"""\
version: 1
gpus: [{{name: gpu0, index: 0}}]
broker: {{poll_interval: 0.1s}}
tenants:
  whisper:
    gpu: gpu0
    vram: 3GiB
    priority: 20
    cooldown: 0s
    restore_timeout: 60s
    match: {{cmdline: "--name whisper"}}
    preempt: [{{signal: {{grace: 5s, start: {start!r}}}}}]
jobs:
  render: {{gpu: gpu0, vram: 10GiB, priority: 50, timeout: 60s, command: {[*hold, "--vram", "10GiB", "--for", "0.3s", "--name", "render"]!r}}}
"""
    )
    state, sock = tmp_path / "state", tmp_path / "gpuherd.sock"
    state.mkdir(mode=0o700)
    journal = Journal(state / "journal.db")
    job_id = journal.submit(Submission(job=JobName("render")))
    journal.close()
    first = serve(cfg, sim_dir, state, sock, crash="restore_started")
    assert first.wait(timeout=60) == -9
    second = serve(cfg, sim_dir, state, sock, crash=None)
    try:
        journal = Journal(state / "journal.db")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            row = journal.job(job_id)
            if row is not None and row.state.final and not journal.pending_restores():
                break
            time.sleep(0.2)
        assert journal.pending_restores() == [], story(journal)
        row = journal.job(job_id)
        assert row is not None
        assert row.state == "succeeded", story(journal)
        assert any(e.kind == "restore_adopted" for e in journal.events()), story(journal)
        time.sleep(1.0)  # a second copy, if one had been started, would hold by now
        with SimHost(sim_dir) as host:
            whispers = [p for p in host.snapshot().processes if p.name == "whisper"]
        assert len(whispers) == 1, story(journal)
        journal.close()
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
