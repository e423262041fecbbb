"""The journal: intents before actions, states that only move forward, replay after a kill -9."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gpuherd.broker.journal import Journal, JournalError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_job_and_release_lifecycle_tells_the_story(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.db", clock=Clock())
    job = journal.submit("mapshot-render", {"vram": 6}, job_id="j1")
    first = journal.release_intent(job, "ollama", "ollama")
    journal.mark_released(first, method="ollama", detail={"models": ["llama3"]})
    second = journal.release_intent(job, "whisper", "signal")
    journal.mark_released(second, method="signal", detail={})
    journal.set_job_state(job, "running", pid=4242, pid_start_ticks=99)
    journal.set_job_state(job, "restoring")
    for release in journal.pending_restores():
        journal.restore_intent(release.id)
        journal.mark_restored(release.id)
    journal.set_job_state(job, "succeeded", exit_code=0)
    assert [(e.kind, e.tenant, e.message) for e in journal.events()] == [
        ("submitted", None, "job mapshot-render queued"),
        ("release_intent", "ollama", "releasing ollama via ollama"),
        ("released", "ollama", "released via ollama"),
        ("release_intent", "whisper", "releasing whisper via signal"),
        ("released", "whisper", "released via signal"),
        ("job_running", None, "job running"),
        ("job_restoring", None, "job restoring"),
        ("restore_started", "whisper", "restoring via signal"),  # reverse release order
        ("restored", "whisper", "restored via signal"),
        ("restore_started", "ollama", "restoring via ollama"),
        ("restored", "ollama", "restored via ollama"),
        ("job_succeeded", None, "job succeeded"),
    ]
    row = journal.job(job)
    assert row is not None
    assert (row.state, row.pid, row.pid_start_ticks, row.exit_code) == ("succeeded", 4242, 99, 0)
    assert row.started_at is not None
    assert row.ended_at is not None
    assert row.ended_at > row.started_at
    assert journal.pending_restores() == []
    assert journal.releases(job_id=job)[0].detail == {"models": ["llama3"]}


def test_states_only_move_forward(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.db")
    job = journal.submit("j", {})
    release = journal.release_intent(job, "t", "command")
    with pytest.raises(JournalError, match="is intent, cannot become restored"):
        journal.mark_restored(release)
    journal.set_job_state(job, "failed", reason="preflight")
    with pytest.raises(JournalError, match="already ended"):
        journal.set_job_state(job, "running")
    with pytest.raises(JournalError, match="unknown job state"):
        journal.set_job_state(job, "exploded")
    journal.restore_intent(release)
    journal.mark_restore_failed(release, "health check timed out")
    journal.restore_intent(release)  # retried later
    assert journal.releases()[0].attempts == 2


CRASHER = """
import os, signal, sys
from pathlib import Path
from gpuherd.broker.journal import Journal
j = Journal(Path(sys.argv[1]))
job = j.submit("render", {"vram": 6}, job_id="crash")
r1 = j.release_intent(job, "ollama", "ollama")
j.mark_released(r1, method="ollama", detail={})
j.release_intent(job, "whisper", "signal")  # the intent is written; the release never finishes
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_intents_survive_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    proc = subprocess.run([sys.executable, "-c", CRASHER, str(db)], check=False)
    assert proc.returncode == -9
    journal = Journal(db)
    pending = journal.pending_restores()
    assert [(r.tenant, r.state) for r in pending] == [("whisper", "intent"), ("ollama", "released")]
    job = journal.job("crash")
    assert job is not None
    assert job.state == "queued"


def test_file_is_private_and_newer_schemas_are_refused(tmp_path: Path) -> None:
    db = tmp_path / "state" / "journal.db"
    Journal(db).close()
    assert db.stat().st_mode & 0o777 == 0o600
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(JournalError, match="newer gpuherd"):
        Journal(db)
