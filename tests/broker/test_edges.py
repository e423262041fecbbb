"""Bad input at the broker's edges: refused with the field named, nothing queued or left."""

from __future__ import annotations

import math
import os
import socket
import subprocess
from pathlib import Path

import pytest

from gpuherd.broker.statelock import StateLocked, lock_state
from gpuherd.broker.submission import Submission, SubmissionError
from gpuherd.ids import JobName
from tests.conftest import gpuherd_argv


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"not_before": 1e300}, "not_before"),
        ({"not_before": math.nan}, "not_before"),
        ({"not_before": -5.0}, "not_before"),
        ({"job": JobName("evil\x1b[2Jlabel")}, "name"),
        ({"key": "k" * 201}, "key"),
    ],
)
def test_submissions_that_could_wedge_the_engine_are_refused(
    fields: dict[str, object], field: str
) -> None:
    """Before, `--not-before +10000000000000d` or NaN overflowed time formatting at every step,
    across restarts, and an ESC sequence in a label reached the operator's terminal."""
    with pytest.raises(SubmissionError) as refused:
        Submission(**{"job": JobName("render"), **fields})  # type: ignore[arg-type]
    assert refused.value.field == field


def test_one_broker_per_state_dir(tmp_path: Path) -> None:
    fd = lock_state(tmp_path)
    try:
        with pytest.raises(StateLocked, match=f"another broker \\(pid {os.getpid()}\\)"):
            lock_state(tmp_path)
    finally:
        os.close(fd)
    os.close(lock_state(tmp_path))  # free again once the holder is gone


def serve(tmp_path: Path, sim_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "gpuherd.yaml"
    config.write_text("version: 1\ngpus: [{name: gpu0, index: 0}]\n")
    return subprocess.run(
        gpuherd_argv(
            "serve",
            "-c",
            str(config),
            "--backend",
            "sim",
            "--sim-dir",
            str(sim_dir),
            "--state",
            str(tmp_path / "state"),
            *extra,
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_serve_never_deletes_what_it_did_not_create(tmp_path: Path, sim_dir: Path) -> None:
    precious = tmp_path / "notes.txt"
    precious.write_text("keep me")
    result = serve(tmp_path, sim_dir, "--socket", str(precious))
    assert result.returncode == 2
    assert "exists and is not a socket; not replacing it" in result.stderr
    assert precious.read_text() == "keep me"
    live = tmp_path / "live.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(live))
    server.listen()
    try:
        result = serve(tmp_path, sim_dir, "--socket", str(live))
    finally:
        server.close()
    assert result.returncode == 2
    assert "another broker is serving there" in result.stderr
    assert live.exists()


def test_serve_refuses_a_state_dir_another_broker_holds(tmp_path: Path, sim_dir: Path) -> None:
    (tmp_path / "state").mkdir()
    fd = lock_state(tmp_path / "state")
    try:
        result = serve(tmp_path, sim_dir, "--socket", str(tmp_path / "s.sock"))
    finally:
        os.close(fd)
    assert result.returncode == 2
    assert "already uses" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_token_file_others_can_read_is_refused(tmp_path: Path, sim_dir: Path) -> None:
    token = tmp_path / "token"
    token.write_text("x" * 32)
    token.chmod(0o644)
    result = serve(tmp_path, sim_dir, "--listen", "127.0.0.1:1", "--token-file", str(token))
    assert result.returncode == 2
    assert "readable by others" in result.stderr
    assert f"chmod 600 {token}" in result.stderr


def test_a_lost_or_truncated_journal_is_noticed(tmp_path: Path, sim_dir: Path) -> None:
    """Before, a deleted or truncated WAL started the broker with an empty journal: tenants
    released forever while status said "running"."""
    from gpuherd.broker.continuity import JournalLost, check_mark, write_mark
    from gpuherd.broker.journal import Journal

    state = tmp_path / "state"
    state.mkdir()
    journal = Journal(state / "journal.db")
    journal.record("test", "event 0")
    journal._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the id and event 0 on disk
    for i in range(1, 5):
        journal.record("test", f"event {i}")  # these only in the WAL, for now
    write_mark(state, journal)
    # The main file as it is on disk while its last writes are still only in the WAL.
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / "journal.db").write_bytes((state / "journal.db").read_bytes())
    (truncated / "journal.mark").write_bytes((state / "journal.mark").read_bytes())
    check_mark(state, journal)  # the real one is fine
    journal.close()
    lost = Journal(truncated / "journal.db")
    with pytest.raises(JournalLost, match="write-ahead log was lost or truncated"):
        check_mark(truncated, lost)
    lost.close()
    for path in state.glob("journal.db*"):
        path.unlink()  # a wiped journal, the mark left beside it
    result = serve(tmp_path, sim_dir, "--socket", str(tmp_path / "s.sock"))
    assert result.returncode == 2
    assert "is not the one this broker last wrote" in result.stderr
    assert "--accept-journal-loss" in result.stderr
    assert "Traceback" not in result.stderr
