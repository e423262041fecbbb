"""The broker's journal: SQLite in WAL mode, one writer, intents recorded before they are acted on.

Every release of a tenant is an `intent` row before anything is done, `released` once the GPU
shows the memory gone, `restore_intent` before the restore starts and `restored` when the tenant
is back. A broker that dies anywhere in between finds the unfinished rows on start
(`pending_restores`) and finishes them. Jobs keep their process identity (pid and start time),
so a restarted broker can tell its own running job from a recycled pid.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpuherd.sqlitetx import immediate

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    state TEXT NOT NULL,
    submitted_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    pid INTEGER,
    pid_start_ticks INTEGER,
    exit_code INTEGER,
    reason TEXT,
    result TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
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
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS releases_state ON releases(state);
CREATE TABLE IF NOT EXISTS schedules (
    job TEXT PRIMARY KEY,
    last_due REAL NOT NULL
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

JOB_STATES = (
    "queued",
    "releasing",
    "starting",
    "running",
    "restoring",
    "succeeded",
    "failed",
    "cancelled",
)
FINAL_JOB_STATES = ("succeeded", "failed", "cancelled")
OPEN_RELEASE_STATES = ("intent", "released", "restore_intent", "restore_failed")
# What `status` and the metrics call a tenant whose latest release is in each state.
TENANT_STATES = {
    "intent": "releasing",
    "released": "released",
    "restore_intent": "restoring",
    "restore_failed": "failed",
}


@dataclass(frozen=True, slots=True)
class JobRow:
    id: str
    name: str
    spec: dict[str, Any]
    state: str
    submitted_at: float
    started_at: float | None
    ended_at: float | None
    pid: int | None
    pid_start_ticks: int | None
    exit_code: int | None
    reason: str | None
    result: dict[str, Any] | None = None  # the result record, once the job ended


def _job_row(r: tuple[Any, ...]) -> JobRow:
    return JobRow(
        id=r[0],
        name=r[1],
        spec=json.loads(r[2]),
        state=r[3],
        submitted_at=r[4],
        started_at=r[5],
        ended_at=r[6],
        pid=r[7],
        pid_start_ticks=r[8],
        exit_code=r[9],
        reason=r[10],
        result=json.loads(r[11]) if r[11] else None,
    )


@dataclass(frozen=True, slots=True)
class ReleaseRow:
    id: int
    job_id: str
    tenant: str
    method: str | None
    state: str
    detail: dict[str, Any]
    created_at: float
    released_at: float | None
    restored_at: float | None
    attempts: int
    failed_at: float | None = None  # the last failed restore: retries back off from here


@dataclass(frozen=True, slots=True)
class EventRow:
    id: int
    at: float
    kind: str
    job_id: str | None
    tenant: str | None
    message: str


class JournalError(Exception):
    pass


class Journal:
    """All writes go through one connection and one lock: SQLite's single-writer rule, kept
    by the broker itself so writes never wait on SQLITE_BUSY."""

    def __init__(self, path: Path, *, clock: Any = time.time) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._clock = clock
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            self.path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = FULL")  # an intent must survive a power cut
        self._conn.execute("PRAGMA foreign_keys = ON")
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise JournalError(f"{self.path} was written by a newer gpuherd (schema {version})")
        self._conn.executescript(_SCHEMA)
        columns = {r[1] for r in self._conn.execute("PRAGMA table_info(releases)")}
        if "failed_at" not in columns:  # journals from before restore retries
            self._conn.execute("ALTER TABLE releases ADD COLUMN failed_at REAL")
        self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self.path.chmod(0o600)

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock, immediate(self._conn) as conn:
            yield conn

    def _event(
        self,
        conn: sqlite3.Connection,
        kind: str,
        message: str,
        *,
        job_id: str | None = None,
        tenant: str | None = None,
    ) -> None:
        conn.execute(
            "INSERT INTO events (at, kind, job_id, tenant, message) VALUES (?,?,?,?,?)",
            (self._clock(), kind, job_id, tenant, message),
        )

    # --- jobs -------------------------------------------------------------------------------

    def submit(self, name: str, spec: dict[str, Any], *, job_id: str | None = None) -> str:
        with self._write() as conn:
            new_id = self._insert_job(conn, name, spec, job_id)
            self._event(conn, "submitted", f"job {name} queued", job_id=new_id)
        return new_id

    def _insert_job(
        self, conn: sqlite3.Connection, name: str, spec: dict[str, Any], job_id: str | None
    ) -> str:
        new_id = job_id or uuid.uuid4().hex[:12]
        conn.execute(
            "INSERT INTO jobs (id, name, spec, state, submitted_at) VALUES (?, ?, ?, 'queued', ?)",
            (new_id, name, json.dumps(spec, sort_keys=True), self._clock()),
        )
        return new_id

    def set_job_state(
        self,
        job_id: str,
        state: str,
        *,
        reason: str | None = None,
        pid: int | None = None,
        pid_start_ticks: int | None = None,
        exit_code: int | None = None,
        result: dict[str, Any] | None = None,
    ) -> None:
        if state not in JOB_STATES:
            raise JournalError(f"unknown job state {state!r}")
        now = self._clock()
        with self._write() as conn:
            row = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise JournalError(f"no job {job_id}")
            if row[0] in FINAL_JOB_STATES:
                raise JournalError(f"job {job_id} already ended ({row[0]})")
            conn.execute(
                "UPDATE jobs SET state = ?, reason = COALESCE(?, reason), "
                "pid = COALESCE(?, pid), pid_start_ticks = COALESCE(?, pid_start_ticks), "
                "exit_code = COALESCE(?, exit_code), result = COALESCE(?, result), "
                "started_at = CASE WHEN ? = 'running' THEN ? ELSE started_at END, "
                "ended_at = CASE WHEN ? IN ('succeeded','failed','cancelled') THEN ? "
                "ELSE ended_at END WHERE id = ?",
                (
                    state,
                    reason,
                    pid,
                    pid_start_ticks,
                    exit_code,
                    json.dumps(result) if result is not None else None,
                    state,
                    now,
                    state,
                    now,
                    job_id,
                ),
            )
            message = f"job {state}" + (f": {reason}" if reason else "")
            self._event(conn, f"job_{state}", message, job_id=job_id)

    def set_result(self, job_id: str, result: dict[str, Any]) -> None:
        with self._write() as conn:
            conn.execute("UPDATE jobs SET result = ? WHERE id = ?", (json.dumps(result), job_id))

    def job(self, job_id: str) -> JobRow | None:
        rows = self._jobs("WHERE id = ?", (job_id,))
        return rows[0] if rows else None

    def jobs(self, *, include_ended: bool = False) -> list[JobRow]:
        if include_ended:
            return self._jobs("", ())
        return self._jobs("WHERE state NOT IN ('succeeded','failed','cancelled')", ())

    def _jobs(self, where: str, args: tuple[object, ...]) -> list[JobRow]:
        sql = (
            "SELECT id, name, spec, state, submitted_at, started_at, ended_at, pid, "  # noqa: S608
            f"pid_start_ticks, exit_code, reason, result FROM jobs {where} "
            "ORDER BY submitted_at, id"
        )
        return [_job_row(r) for r in self._conn.execute(sql, args)]

    # --- releases (the intents) ---------------------------------------------------------------

    def release_intent(self, job_id: str, tenant: str, method: str | None) -> int:
        """Recorded BEFORE anything is done to the tenant."""
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO releases (job_id, tenant, method, state, created_at) "
                "VALUES (?, ?, ?, 'intent', ?)",
                (job_id, tenant, method, self._clock()),
            )
            self._event(
                conn,
                "release_intent",
                f"releasing {tenant} via {method}",
                job_id=job_id,
                tenant=tenant,
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

    def mark_released(self, release_id: int, *, method: str, detail: dict[str, Any]) -> None:
        self._advance(
            release_id,
            ("intent",),
            "released",
            "released_at",
            method=method,
            detail=detail,
            message="released via {method}",
        )

    def restore_intent(self, release_id: int) -> None:
        self._advance(
            release_id,
            ("intent", "released", "restore_failed", "restore_intent"),
            "restore_intent",
            "restore_started_at",
            message="restoring via {method}",
            count_attempt=True,
        )

    def mark_restored(self, release_id: int) -> None:
        self._advance(
            release_id,
            ("restore_intent",),
            "restored",
            "restored_at",
            message="restored via {method}",
        )

    def mark_restore_failed(self, release_id: int, reason: str) -> None:
        self._advance(
            release_id,
            ("restore_intent",),
            "restore_failed",
            "failed_at",
            message=f"restore via {{method}} failed: {reason}",
        )

    def _advance(
        self,
        release_id: int,
        allowed: tuple[str, ...],
        state: str,
        stamp: str | None,
        *,
        message: str,
        method: str | None = None,
        detail: dict[str, Any] | None = None,
        count_attempt: bool = False,
    ) -> None:
        with self._write() as conn:
            row = conn.execute(
                "SELECT state, job_id, tenant, method FROM releases WHERE id = ?", (release_id,)
            ).fetchone()
            if row is None:
                raise JournalError(f"no release {release_id}")
            if row[0] not in allowed:
                raise JournalError(f"release {release_id} is {row[0]}, cannot become {state}")
            sets = ["state = ?"]
            args: list[object] = [state]
            if stamp:
                sets.append(f"{stamp} = ?")
                args.append(self._clock())
            if method is not None:
                sets.append("method = ?")
                args.append(method)
            if detail is not None:
                sets.append("detail = ?")
                args.append(json.dumps(detail, sort_keys=True))
            if count_attempt:
                sets.append("attempts = attempts + 1")
            conn.execute(
                f"UPDATE releases SET {', '.join(sets)} WHERE id = ?",  # noqa: S608
                (*args, release_id),
            )
            kind = {
                "released": "released",
                "restore_intent": "restore_started",
                "restored": "restored",
                "restore_failed": "restore_failed",
            }[state]
            self._event(
                conn, kind, message.format(method=method or row[3]), job_id=row[1], tenant=row[2]
            )

    def releases(self, *, job_id: str | None = None, open_only: bool = False) -> list[ReleaseRow]:
        where, args = [], []
        if job_id is not None:
            where.append("job_id = ?")
            args.append(job_id)
        if open_only:
            where.append(f"state IN ({','.join('?' * len(OPEN_RELEASE_STATES))})")
            args += OPEN_RELEASE_STATES
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        columns = (
            "id, job_id, tenant, method, state, detail, created_at, released_at, "
            "restored_at, attempts, failed_at"
        )
        sql = f"SELECT {columns} FROM releases {clause} ORDER BY id"  # noqa: S608
        return [
            ReleaseRow(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), *r[6:])
            for r in self._conn.execute(sql, args)
        ]

    def pending_restores(self) -> list[ReleaseRow]:
        """Tenants released (or maybe released) and not yet restored: newest release first, so
        they come back in reverse release order."""
        return list(reversed(self.releases(open_only=True)))

    # --- events -------------------------------------------------------------------------------

    # --- schedules ----------------------------------------------------------------------------

    def schedule_marks(self) -> dict[str, float]:
        """The last fire time handled per scheduled job (fired, caught up or missed)."""
        return dict(self._conn.execute("SELECT job, last_due FROM schedules"))

    def fire_schedules(
        self, marks: dict[str, float], runs: list[tuple[str, dict[str, Any], str]]
    ) -> list[str]:
        """Queue `runs` (name, spec, event message) and store `marks` in one transaction, so a
        crash can neither lose a fired run nor fire it twice."""
        ids = []
        with self._write() as conn:
            for name, spec, message in runs:
                job_id = self._insert_job(conn, name, spec, None)
                self._event(conn, "schedule_fired", message, job_id=job_id)
                ids.append(job_id)
            conn.executemany(
                "INSERT INTO schedules (job, last_due) VALUES (?, ?) "
                "ON CONFLICT(job) DO UPDATE SET last_due = excluded.last_due",
                list(marks.items()),
            )
        return ids

    def event_counts(self) -> dict[str, int]:
        """Events by kind: counters that never go down (a retried restore still failed once)."""
        return dict(self._conn.execute("SELECT kind, COUNT(*) FROM events GROUP BY kind"))

    def record(
        self, kind: str, message: str, *, job_id: str | None = None, tenant: str | None = None
    ) -> None:
        with self._write() as conn:
            self._event(conn, kind, message, job_id=job_id, tenant=tenant)

    def events_after(self, event_id: int) -> list[EventRow]:
        return self._events("id > ?", event_id)

    def events(self, *, since: float | None = None) -> list[EventRow]:
        return self._events("at >= ?", since if since is not None else 0.0)

    def _events(self, where: str, arg: float) -> list[EventRow]:
        """`where` is one of the two literal conditions above, never user text."""
        columns = "id, at, kind, job_id, tenant, message"
        sql = f"SELECT {columns} FROM events WHERE {where} ORDER BY id"  # noqa: S608
        return [EventRow(*r) for r in self._conn.execute(sql, (arg,))]

    def last_restored(self) -> dict[str, float]:
        """When each tenant was last restored (for its cooldown)."""
        sql = "SELECT tenant, MAX(restored_at) FROM releases WHERE restored_at IS NOT NULL "
        return dict(self._conn.execute(sql + "GROUP BY tenant"))
