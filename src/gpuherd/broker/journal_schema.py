"""The journal's tables and the migrations from older state dirs.

Version 1 kept a job's local pid and start ticks in two columns and its submission in a column
named `spec`; version 2 keeps a launcher-neutral handle (JSON), the submission, an idempotency
key, and with every release the plan to restore it.
"""

from __future__ import annotations

import json
import sqlite3
import uuid

SCHEMA_VERSION = 2

_TABLES = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    submission TEXT NOT NULL,
    state TEXT NOT NULL,
    submitted_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    handle TEXT,
    exit_code INTEGER,
    reason TEXT,
    result TEXT,
    idem_key TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idem_key ON jobs(idem_key) WHERE idem_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS releases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL REFERENCES jobs(id),
    tenant TEXT NOT NULL,
    method TEXT,
    state TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    released_at REAL,
    restore_started_at REAL,
    restored_at REAL,
    failed_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    plan TEXT
);
CREATE INDEX IF NOT EXISTS releases_state ON releases(state);
CREATE TABLE IF NOT EXISTS schedules (
    job TEXT PRIMARY KEY,
    last_due REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    job_id TEXT,
    tenant TEXT,
    message TEXT NOT NULL
);
"""


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}


def _from_v1(conn: sqlite3.Connection) -> None:
    jobs = _columns(conn, "jobs")
    if "spec" in jobs:
        conn.execute("ALTER TABLE jobs RENAME COLUMN spec TO submission")
    if "handle" not in jobs:
        conn.execute("ALTER TABLE jobs ADD COLUMN handle TEXT")
        rows = conn.execute(
            "SELECT id, pid, pid_start_ticks FROM jobs WHERE pid IS NOT NULL"
        ).fetchall()
        for job_id, pid, ticks in rows:
            handle = json.dumps({"launcher": "local", "pid": pid, "ticks": ticks}, sort_keys=True)
            conn.execute("UPDATE jobs SET handle = ? WHERE id = ?", (handle, job_id))
        conn.execute("ALTER TABLE jobs DROP COLUMN pid")
        conn.execute("ALTER TABLE jobs DROP COLUMN pid_start_ticks")
    if "idem_key" not in jobs:
        conn.execute("ALTER TABLE jobs ADD COLUMN idem_key TEXT")
    releases = _columns(conn, "releases")
    if "failed_at" not in releases:  # journals from before restore retries
        conn.execute("ALTER TABLE releases ADD COLUMN failed_at REAL")
    if "plan" not in releases:
        conn.execute("ALTER TABLE releases ADD COLUMN plan TEXT")


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the journal to SCHEMA_VERSION in one transaction; returns the version found."""
    found = int(conn.execute("PRAGMA user_version").fetchone()[0])
    has_jobs = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jobs'"
    ).fetchone()
    conn.execute("BEGIN IMMEDIATE")
    try:
        if has_jobs and found < SCHEMA_VERSION:
            _from_v1(conn)
        for statement in _TABLES.split(";"):  # not executescript: it would COMMIT first
            if statement.strip():
                conn.execute(statement)
        # Who this journal is, so a replaced one is noticed (continuity.py).
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('journal_id', ?)",
            (uuid.uuid4().hex,),
        )
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found
