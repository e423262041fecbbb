"""The journal: intents before actions, states that only move forward, replay after a kill -9."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from gpuherd.broker.journal import Journal, JournalError
from gpuherd.broker.records import Handle, RestorePlan
from gpuherd.broker.states import JobState
from gpuherd.broker.submission import Submission
from gpuherd.ids import JobName
from gpuherd.spec.model import TenantSpec


def sub(name: str, key: str | None = None) -> Submission:
    return Submission(job=JobName(name), key=key)


def plan(kind: str) -> RestorePlan:
    method = (
        {"command": {"release": ["stop"], "restore": ["start"]}}
        if kind == "command"
        else {kind: {}}
    )
    tenant = TenantSpec.model_validate({"gpu": "gpu0", "vram": "1GiB", "preempt": [method]})
    return RestorePlan(tenant=tenant, index=0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_job_and_release_lifecycle_tells_the_story(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.db", clock=Clock())
    job = journal.submit(sub("mapshot-render"))
    journal.set_job_state(job, JobState.RELEASING)
    first = journal.release_intent(job, "ollama", plan("ollama"))
    journal.mark_released(first, detail={"models": ["llama3"]})
    second = journal.release_intent(job, "whisper", plan("signal"))
    journal.mark_released(second, detail={})
    journal.set_job_state(job, JobState.STARTING)
    handle = Handle.of("local", pid=4242, ticks=99)
    journal.set_job_state(job, JobState.RUNNING, handle=handle)
    journal.set_job_state(job, JobState.RESTORING)
    for release in journal.pending_restores():
        journal.restore_intent(release.id)
        journal.mark_restored(release.id)
    journal.set_job_state(job, JobState.SUCCEEDED, exit_code=0)
    assert [(e.kind, e.tenant, e.message) for e in journal.events()] == [
        ("submitted", None, "job mapshot-render queued"),
        ("job_releasing", None, "job releasing"),
        ("release_intent", "ollama", "releasing ollama via ollama"),
        ("released", "ollama", "released via ollama"),
        ("release_intent", "whisper", "releasing whisper via signal"),
        ("released", "whisper", "released via signal"),
        ("job_starting", None, "job starting"),
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
    assert (row.state, row.handle, row.exit_code) == ("succeeded", handle, 0)
    assert row.started_at is not None
    assert row.ended_at is not None
    assert row.ended_at > row.started_at
    assert journal.pending_restores() == []
    assert journal.releases(job_id=job)[0].detail == {"models": ["llama3"]}
    assert journal.releases(job_id=job)[0].plan == plan("ollama")


def test_states_only_move_forward(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.db")
    job = journal.submit(sub("j"))
    with pytest.raises(JournalError, match="is queued, cannot become running"):
        journal.set_job_state(job, JobState.RUNNING)  # never without releasing and starting
    release = journal.release_intent(job, "t", plan("command"))
    with pytest.raises(JournalError, match="is intent, cannot become restored"):
        journal.mark_restored(release)
    journal.set_job_state(job, JobState.FAILED, reason="preflight")
    with pytest.raises(JournalError, match="is failed, cannot become running"):
        journal.set_job_state(job, JobState.RUNNING)
    assert not journal.set_job_state(job, JobState.CANCELLED, expect=(JobState.QUEUED,))
    journal.restore_intent(release)
    journal.mark_restore_failed(release, "health check timed out")
    journal.restore_intent(release)  # retried later
    assert journal.releases()[0].attempts == 2


CRASHER = """
import os, signal, sys
from pathlib import Path
from gpuherd.broker.journal import Journal
from gpuherd.broker.records import RestorePlan
from gpuherd.broker.submission import Submission
j = Journal(Path(sys.argv[1]))
job = j.submit(Submission(job="render"))
print(job, flush=True)
from gpuherd.spec.model import TenantSpec
plan = lambda kind: RestorePlan(TenantSpec(vram="1GiB", preempt=[{kind: {}}]), 0)
r1 = j.release_intent(job, "ollama", plan("ollama"))
j.mark_released(r1, detail={})
j.release_intent(job, "whisper", plan("signal"))  # the intent is written; the release never ends
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_intents_survive_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    proc = subprocess.run(
        [sys.executable, "-c", CRASHER, str(db)], check=False, capture_output=True, text=True
    )
    assert proc.returncode == -9
    journal = Journal(db)
    pending = journal.pending_restores()
    assert [(r.tenant, r.state) for r in pending] == [("whisper", "intent"), ("ollama", "released")]
    job = journal.job(proc.stdout.strip())
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


def test_an_idempotency_key_returns_the_same_job(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.db")
    first = journal.submit(sub("render", key="nightly-2026-12-01"))
    again = journal.submit(sub("render", key="nightly-2026-12-01"))
    other = journal.submit(sub("render", key="nightly-2026-12-02"))
    assert first == again != other
    assert len(journal.jobs()) == 2
    assert [e.kind for e in journal.events()] == ["submitted", "submitted"]


def test_readers_never_see_an_open_write_transaction(tmp_path: Path) -> None:
    """API threads read while the engine writes: before, they shared the writer's connection
    and saw rows of a transaction that was not committed (and might roll back)."""
    journal = Journal(tmp_path / "journal.db")
    seen: list[int] = []
    with journal._write() as conn:  # the engine, halfway through a transaction
        conn.execute(
            "INSERT INTO jobs (id, name, submission, state, submitted_at) "
            "VALUES ('x', 'x', '{}', 'queued', 0)"
        )
        reader = threading.Thread(target=lambda: seen.append(len(journal.jobs())))
        reader.start()
        reader.join(5)
    assert seen == [0]
    assert len(journal.jobs()) == 1


V1 = """
CREATE TABLE jobs (id TEXT PRIMARY KEY, name TEXT NOT NULL, spec TEXT NOT NULL,
    state TEXT NOT NULL, submitted_at REAL NOT NULL, started_at REAL, ended_at REAL, pid INTEGER,
    pid_start_ticks INTEGER, exit_code INTEGER, reason TEXT, result TEXT);
CREATE TABLE releases (id INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL,
    tenant TEXT NOT NULL, method TEXT, state TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL, released_at REAL, restore_started_at REAL, restored_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0);
CREATE TABLE schedules (job TEXT PRIMARY KEY, last_due REAL NOT NULL);
CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, kind TEXT NOT NULL,
    job_id TEXT, tenant TEXT, message TEXT NOT NULL);
INSERT INTO jobs VALUES ('old1', 'render', '{"job": "render", "not_before": 5.0}', 'running',
    1.0, 2.0, NULL, 4242, 99, NULL, NULL, NULL);
INSERT INTO releases (job_id, tenant, method, state, detail, created_at, released_at)
    VALUES ('old1', 'ollama', 'ollama', 'released', '{"held": 4}', 1.5, 1.6);
PRAGMA user_version = 1;
"""


def test_a_version_1_state_dir_is_migrated(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    conn = sqlite3.connect(db)
    conn.executescript(V1)
    conn.close()
    journal = Journal(db)
    row = journal.job("old1")
    assert row is not None
    assert row.handle == Handle.of("local", pid=4242, ticks=99)
    assert (row.state, row.submission.job, row.submission.not_before) == ("running", "render", 5.0)
    (release,) = journal.pending_restores()
    assert (release.tenant, release.state, release.plan) == ("ollama", "released", None)
    journal.close()
    columns = {r[1] for r in sqlite3.connect(db).execute("PRAGMA table_info(jobs)")}
    assert {"handle", "submission", "idem_key"} <= columns
    assert not {"pid", "pid_start_ticks", "spec"} & columns
    Journal(db).close()  # migrating twice changes nothing


def test_concurrent_submissions_are_group_committed_and_each_held_once(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.db")
    ids: list[str] = []
    start = threading.Barrier(40)

    def one(i: int) -> None:
        start.wait()
        ids.append(journal.submit(sub("render", key=f"k{i % 20}")))  # each key twice

    threads = [threading.Thread(target=one, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(ids) == 40
    assert len(set(ids)) == 20  # the second submission with a key got the first one's job
    assert len(journal.jobs()) == 20
    assert sorted(r.submission.key or "" for r in journal.jobs()) == sorted(
        f"k{i}" for i in range(20)
    )
