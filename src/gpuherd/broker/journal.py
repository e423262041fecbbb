"""The broker's journal: SQLite in WAL mode, one writer, intents recorded before they are acted on.

Every release of a tenant is an `intent` row (with the plan to restore it) before anything is
done, `released` once the GPU shows the memory gone, `restore_intent` before the restore starts
and `restored` when the tenant is back. A broker that dies anywhere in between finds the
unfinished rows on start (`pending_restores`) and finishes them. Jobs keep their launcher's
handle, so a restarted broker can tell its own running job from a recycled pid.

Writes go through one connection under one lock; every other thread reads through its own
connection, so a reader never sees a write transaction half done.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpuherd.broker.journal_schema import SCHEMA_VERSION, migrate
from gpuherd.broker.records import EventRow, Handle, JobRow, ReleaseRow, RestorePlan
from gpuherd.broker.states import (
    FINAL_JOB_STATES,
    JOB_MOVES,
    OPEN_RELEASE_STATES,
    RELEASE_MOVES,
    JobState,
    ReleaseState,
)
from gpuherd.broker.submission import Submission
from gpuherd.ids import JobId, TenantName
from gpuherd.sqlitetx import immediate

_JOB_COLUMNS = (
    "id, name, submission, state, submitted_at, started_at, ended_at, handle, exit_code, "
    "reason, result, idem_key"
)
_RELEASE_COLUMNS = (
    "id, job_id, tenant, method, state, detail, created_at, released_at, restored_at, "
    "attempts, failed_at, plan"
)
_FINAL = tuple(str(s) for s in FINAL_JOB_STATES)
_RELEASE_EVENT = {
    ReleaseState.RELEASED: "released",
    ReleaseState.RESTORE_INTENT: "restore_started",
    ReleaseState.RESTORED: "restored",
    ReleaseState.RESTORE_FAILED: "restore_failed",
}


class JournalError(Exception):
    pass


@dataclass(eq=False, slots=True)
class _Pending:
    """A submission waiting for the next group commit."""

    submission: Submission
    job_id: JobId | None = None
    error: Exception | None = None
    done: bool = False


class Journal:
    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._clock = clock
        self._lock = threading.Lock()
        self._pending_lock = threading.Lock()
        self._pending: list[_Pending] = []
        self._conn = self._connect()
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = FULL")  # an intent must survive a power cut
        self._conn.execute("PRAGMA foreign_keys = ON")
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise JournalError(f"{self.path} was written by a newer gpuherd (schema {version})")
        migrate(self._conn)
        self.path.chmod(0o600)
        self._local = threading.local()
        # Parsed submissions by job id: a row's submission is written once and never changes,
        # and every step reads every open job (parsing each again cost most of a busy step).
        self._submissions: dict[str, Submission] = {}
        self._readers_lock = threading.Lock()
        self._readers: list[sqlite3.Connection] = []

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(
            self.path, timeout=30.0, isolation_level=None, check_same_thread=False
        )

    @property
    def _read(self) -> sqlite3.Connection:
        """This thread's read connection: in WAL mode it sees the last committed state and
        never an open write transaction."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
            conn.execute("PRAGMA query_only = ON")
            with self._readers_lock:  # not the write lock: a reader never waits on a writer
                self._readers.append(conn)
        return conn

    def close(self) -> None:
        with self._lock, self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
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

    def submit(self, submission: Submission) -> JobId:
        """Queue it; with an idempotency key already used, the job queued then.

        Group commit: submissions that arrive while another transaction holds the writer are
        written together by whichever of them gets it next, in one transaction and one fsync,
        and each caller returns once its own row is durable."""
        mine = _Pending(submission)
        with self._pending_lock:
            self._pending.append(mine)
        with self._lock:
            if not mine.done:
                with self._pending_lock:
                    batch, self._pending = self._pending, []
                self._commit_submissions(batch)
        if mine.error is not None:
            raise mine.error
        assert mine.job_id is not None
        return mine.job_id

    def submit_many(self, submissions: list[Submission]) -> list[JobId]:
        """Queue them all in one transaction and one fsync, in order; all are written or none
        (the error is raised). A key used twice in the batch names one job."""
        with self._write() as conn:
            return [self._submit_one(conn, s) for s in submissions]

    def _commit_submissions(self, batch: list[_Pending]) -> None:
        try:
            with immediate(self._conn) as conn:
                for item in batch:
                    item.job_id = self._submit_one(conn, item.submission)
        except Exception as exc:  # none of them is written: each caller gets the error
            for item in batch:
                item.job_id, item.error = None, exc
        for item in batch:
            item.done = True

    def _submit_one(self, conn: sqlite3.Connection, submission: Submission) -> JobId:
        if submission.key is not None:
            row = conn.execute(
                "SELECT id FROM jobs WHERE idem_key = ?", (submission.key,)
            ).fetchone()
            if row is not None:
                return JobId(row[0])
        new_id = self._insert_job(conn, submission)
        self._event(conn, "submitted", f"job {submission.job} queued", job_id=new_id)
        return new_id

    def _insert_job(self, conn: sqlite3.Connection, submission: Submission) -> JobId:
        new_id = JobId(uuid.uuid4().hex[:12])
        conn.execute(
            "INSERT INTO jobs (id, name, submission, state, submitted_at, idem_key) "
            "VALUES (?, ?, ?, 'queued', ?, ?)",
            (new_id, submission.job, submission.to_json(), self._clock(), submission.key),
        )
        return new_id

    def set_job_state(
        self,
        job_id: JobId,
        state: JobState,
        *,
        reason: str | None = None,
        handle: Handle | None = None,
        exit_code: int | None = None,
        expect: tuple[JobState, ...] | None = None,
    ) -> bool:
        """Move the job to `state` if the table allows it from where it is. With `expect`,
        only from those states, and False (nothing written) from any other: how a cancel
        and the engine agree on who ends a job."""
        now = self._clock()
        with self._write() as conn:
            row = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise JournalError(f"no job {job_id}")
            current = JobState(row[0])
            if expect is not None and current not in expect:
                return False
            if state not in JOB_MOVES[current]:
                raise JournalError(f"job {job_id} is {current}, cannot become {state}")
            conn.execute(
                "UPDATE jobs SET state = ?, reason = COALESCE(?, reason), "  # noqa: S608
                "handle = COALESCE(?, handle), exit_code = COALESCE(?, exit_code), "
                "started_at = CASE WHEN ? = 'running' THEN ? ELSE started_at END, "
                f"ended_at = CASE WHEN ? IN {_FINAL!r} THEN ? ELSE ended_at END "
                "WHERE id = ?",
                (
                    str(state),
                    reason,
                    None if handle is None else handle.to_json(),
                    exit_code,
                    str(state),
                    now,
                    str(state),
                    now,
                    job_id,
                ),
            )
            message = f"job {state}" + (f": {reason}" if reason else "")
            self._event(conn, f"job_{state}", message, job_id=job_id)
        return True

    def set_result(self, job_id: JobId, result: dict[str, Any]) -> None:
        with self._write() as conn:
            conn.execute("UPDATE jobs SET result = ? WHERE id = ?", (json.dumps(result), job_id))

    def job(self, job_id: str) -> JobRow | None:
        rows = self._jobs("WHERE id = ?", (job_id,))
        return rows[0] if rows else None

    def jobs(self, *, include_ended: bool = False) -> list[JobRow]:
        if include_ended:
            return self._jobs("", ())
        return self._jobs(f"WHERE state NOT IN {_FINAL!r}", ())

    def _jobs(self, where: str, args: tuple[object, ...]) -> list[JobRow]:
        sql = f"SELECT {_JOB_COLUMNS} FROM jobs {where} ORDER BY submitted_at, id"  # noqa: S608
        known = self._submissions
        rows = [JobRow.from_sql(r, known.get(r[0])) for r in self._read.execute(sql, args)]
        if len(known) > 4 * len(rows) + 1024:  # forget jobs no longer read (a swap: atomic)
            self._submissions = known = {}
        for row in rows:
            if not row.state.final:
                known.setdefault(row.id, row.submission)
        return rows

    # --- releases (the intents) ---------------------------------------------------------------

    def release_intent(self, job_id: JobId, tenant: str, plan: RestorePlan) -> int:
        """Recorded BEFORE anything is done to the tenant, with all a restore will need."""
        kind = plan.method.kind
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO releases (job_id, tenant, method, state, created_at, plan) "
                "VALUES (?, ?, ?, 'intent', ?, ?)",
                (job_id, tenant, kind, self._clock(), plan.to_json()),
            )
            self._event(
                conn,
                "release_intent",
                f"releasing {tenant} via {kind}",
                job_id=job_id,
                tenant=tenant,
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

    def mark_released(self, release_id: int, *, detail: dict[str, Any]) -> None:
        self._advance(release_id, ReleaseState.RELEASED, "released via {method}", detail=detail)

    def restore_intent(self, release_id: int) -> None:
        self._advance(release_id, ReleaseState.RESTORE_INTENT, "restoring via {method}")

    def mark_restored(self, release_id: int, note: str | None = None) -> None:
        suffix = f" ({note})" if note else ""
        self._advance(release_id, ReleaseState.RESTORED, "restored via {method}" + suffix)

    def mark_restore_failed(self, release_id: int, reason: str) -> None:
        message = "restore via {method} failed: " + reason.replace("{", "{{").replace("}", "}}")
        self._advance(release_id, ReleaseState.RESTORE_FAILED, message)

    def add_detail(self, release_id: int, facts: dict[str, Any]) -> None:
        """Merge facts into a release's detail without moving its state (a restore's started
        process, so a restarted broker adopts it instead of starting a second)."""
        with self._write() as conn:
            row = conn.execute("SELECT detail FROM releases WHERE id = ?", (release_id,)).fetchone()
            if row is None:
                raise JournalError(f"no release {release_id}")
            detail = {**json.loads(row[0]), **facts}
            conn.execute(
                "UPDATE releases SET detail = ? WHERE id = ?",
                (json.dumps(detail, sort_keys=True), release_id),
            )

    def _advance(
        self,
        release_id: int,
        state: ReleaseState,
        message: str,
        *,
        detail: dict[str, Any] | None = None,
    ) -> None:
        stamp = {
            ReleaseState.RELEASED: "released_at",
            ReleaseState.RESTORE_INTENT: "restore_started_at",
            ReleaseState.RESTORED: "restored_at",
            ReleaseState.RESTORE_FAILED: "failed_at",
        }[state]
        with self._write() as conn:
            row = conn.execute(
                "SELECT state, job_id, tenant, method FROM releases WHERE id = ?", (release_id,)
            ).fetchone()
            if row is None:
                raise JournalError(f"no release {release_id}")
            if state not in RELEASE_MOVES[ReleaseState(row[0])]:
                raise JournalError(f"release {release_id} is {row[0]}, cannot become {state}")
            sets, args = [f"state = ?, {stamp} = ?"], [str(state), self._clock()]
            if detail is not None:
                sets.append("detail = ?")
                args.append(json.dumps(detail, sort_keys=True))
            if state is ReleaseState.RESTORE_INTENT:
                sets.append("attempts = attempts + 1")
            conn.execute(
                f"UPDATE releases SET {', '.join(sets)} WHERE id = ?",  # noqa: S608
                (*args, release_id),
            )
            text = message.format(method=row[3])
            self._event(conn, _RELEASE_EVENT[state], text, job_id=row[1], tenant=row[2])

    def releases(self, *, job_id: str | None = None, open_only: bool = False) -> list[ReleaseRow]:
        where, args = [], []
        if job_id is not None:
            where.append("job_id = ?")
            args.append(job_id)
        if open_only:
            where.append(f"state IN ({','.join('?' * len(OPEN_RELEASE_STATES))})")
            args += [str(s) for s in OPEN_RELEASE_STATES]
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT {_RELEASE_COLUMNS} FROM releases {clause} ORDER BY id"  # noqa: S608
        return [ReleaseRow.from_sql(r) for r in self._read.execute(sql, args)]

    def pending_restores(self) -> list[ReleaseRow]:
        """Tenants released (or maybe released) and not yet restored: newest release first, so
        they come back in reverse release order."""
        return list(reversed(self.releases(open_only=True)))

    def last_restored(self) -> dict[str, float]:
        """When each tenant was last restored (for its cooldown)."""
        sql = "SELECT tenant, MAX(restored_at) FROM releases WHERE restored_at IS NOT NULL "
        return dict(self._read.execute(sql + "GROUP BY tenant"))

    def restore_costs(self) -> dict[TenantName, float]:
        """Seconds each tenant's last restore took: what the scheduler expects the next to cost."""
        sql = (
            "SELECT tenant, restored_at - restore_started_at FROM releases "
            "WHERE id IN (SELECT MAX(id) FROM releases WHERE restored_at IS NOT NULL "
            "GROUP BY tenant)"
        )
        return {TenantName(t): max(0.0, float(c or 0.0)) for t, c in self._read.execute(sql)}

    def guard_job(self, job_id: JobId, *, reason: str = "guard") -> None:
        """The row a GPU's headroom guard journals its releases under (`guard.guard_job_id`),
        or another holder of releases that no job made (`reason` says which). No job runs in
        it: it is born ended, so no job path (queue, replay) ever picks it up."""
        now = self._clock()
        with self._write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO jobs (id, name, submission, state, submitted_at, ended_at, "
                "reason) VALUES (?, ?, ?, 'succeeded', ?, ?, ?)",
                (job_id, job_id, json.dumps({"job": job_id}), now, now, reason),
            )

    # --- schedules ----------------------------------------------------------------------------

    def schedule_marks(self) -> dict[str, float]:
        """The last fire time handled per scheduled job (fired, caught up or missed)."""
        return dict(self._read.execute("SELECT job, last_due FROM schedules"))

    def fire_schedules(
        self, marks: dict[str, float], runs: list[tuple[Submission, str]]
    ) -> list[JobId]:
        """Queue `runs` (submission, event message) and store `marks` in one transaction, so a
        crash can neither lose a fired run nor fire it twice."""
        ids = []
        with self._write() as conn:
            for submission, message in runs:
                job_id = self._insert_job(conn, submission)
                self._event(conn, "schedule_fired", message, job_id=job_id)
                ids.append(job_id)
            conn.executemany(
                "INSERT INTO schedules (job, last_due) VALUES (?, ?) "
                "ON CONFLICT(job) DO UPDATE SET last_due = excluded.last_due",
                list(marks.items()),
            )
        return ids

    # --- events -------------------------------------------------------------------------------

    def identity(self) -> tuple[str, int]:
        """(this journal's id, the id of its last event)."""
        row = self._read.execute("SELECT value FROM meta WHERE key = 'journal_id'").fetchone()
        last = self._read.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]
        return (row[0] if row else ""), int(last)

    def event_counts(self) -> dict[str, int]:
        """Events by kind: counters that never go down (a retried restore still failed once)."""
        return dict(self._read.execute("SELECT kind, COUNT(*) FROM events GROUP BY kind"))

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
        return [EventRow(*r) for r in self._read.execute(sql, (arg,))]
