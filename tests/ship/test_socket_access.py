"""The broker's socket for a group: born 0660 with the group, members submit and cancel their
own jobs, others get permission denied; the submitter's uid (SO_PEERCRED) is recorded and shown.

The clients are real processes under other uids (Popen's user=/extra_groups=, so root is needed)
speaking HTTP by hand with the system Python's standard library alone."""

from __future__ import annotations

import grp
import json
import os
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpuherd.api.owners import may_cancel
from gpuherd.api.server import bind_unix
from tests.broker.test_serve import cli
from tests.conftest import gpuherd_argv

NOBODY, SECOND, OUTSIDER = 65534, 65533, 65532
SYSTEM_PYTHON = "/usr/bin/python3"
CLIENT = r"""
import json, socket, sys
method, path, body = sys.argv[1], sys.argv[2], sys.argv[3]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[4])
except PermissionError:
    print(json.dumps({"status": "denied"})); sys.exit(0)
req = f"{method} {path} HTTP/1.1\r\nHost: gpuherd\r\nContent-Type: application/json\r\n"
req += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}"
s.sendall(req.encode())
data = b""
while chunk := s.recv(65536):
    data += chunk
head, _, rest = data.partition(b"\r\n\r\n")
if b"chunked" in head.lower():
    out = b""
    while rest:
        size, _, rest = rest.partition(b"\r\n")
        n = int(size, 16)
        out, rest = out + rest[:n], rest[n + 2:]
        if n == 0: break
    rest = out
print(json.dumps({"status": int(head.split()[1]), "body": json.loads(rest or b"null")}))
"""


def as_user(
    uid: int, groups: list[int], sock: Path, method: str, path: str, *, body: object = None
) -> dict[str, object]:
    done = subprocess.run(
        [SYSTEM_PYTHON, "-c", CLIENT, method, path, json.dumps(body) if body else "", str(sock)],
        user=uid,
        group=uid,
        extra_groups=groups,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        cwd="/",
    )
    answer: dict[str, object] = json.loads(done.stdout)
    return answer


def test_socket_is_born_with_its_group_and_mode(tmp_path: Path) -> None:
    """Watch the path while it is bound: it never exists with another mode or group."""
    gid = os.getgid()
    path = tmp_path / "gpuherd.sock"
    seen: set[tuple[int, int]] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                st = path.lstat()
            except FileNotFoundError:
                continue
            seen.add((stat.S_IMODE(st.st_mode), st.st_gid))

    for _ in range(20):
        watcher = threading.Thread(target=watch)
        watcher.start()
        listener = bind_unix(path, group=gid)
        time.sleep(0.01)
        stop.set()
        watcher.join()
        listener.close()
        path.unlink()
        stop.clear()
    assert seen == {(0o660, gid)}
    assert list(tmp_path.iterdir()) == []  # no private bind directory left behind

    listener = bind_unix(path)
    try:
        assert stat.S_IMODE(path.lstat().st_mode) == 0o600
    finally:
        listener.close()


def test_who_may_cancel() -> None:
    broker = 999
    assert may_cancel(peer=None, owner=5, broker=broker)  # TCP: the token is the broker's
    assert may_cancel(peer=0, owner=5, broker=broker)
    assert may_cancel(peer=broker, owner=5, broker=broker)
    assert may_cancel(peer=5, owner=5, broker=broker)
    assert not may_cancel(peer=6, owner=5, broker=broker)
    assert not may_cancel(peer=6, owner=None, broker=broker)  # a scheduled job


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory other uids can reach (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="gpuherd-group-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="clients under other uids need root to start")
@pytest.mark.skipif(not Path(SYSTEM_PYTHON).exists(), reason=f"no {SYSTEM_PYTHON} for clients")
def test_group_members_submit_and_cancel_their_own(
    sim_dir: Path, tmp_path: Path, shared_dir: Path
) -> None:
    group = grp.getgrnam("users").gr_gid  # any group will do: the clients join it by gid
    config = tmp_path / "gpuherd.yaml"
    config.write_text("""\
version: 1
gpus: [{name: gpu0, index: 0}]
jobs:
  later: {gpu: gpu0, vram: 1GiB, command: [/bin/true]}
""")
    sock = shared_dir / "gpuherd.sock"
    where = ["--sim-dir", str(sim_dir), "--state", str(tmp_path / "state"), "--socket", str(sock)]
    server = subprocess.Popen(
        gpuherd_argv(
            "serve", "-c", str(config), "--backend", "sim", *where, "--socket-group", str(group)
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert json.loads(server.stdout.readline())["event"] == "listening"
        threading.Thread(target=server.stdout.read, daemon=True).start()
        st = sock.stat()
        assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o660, group)

        later = {"name": "later", "not_before": time.time() + 3600}  # stays queued
        mine = as_user(NOBODY, [group], sock, "POST", "/v1/jobs", body=later)
        assert mine["status"] == 201, mine
        job = mine["body"]["id"]  # type: ignore[index]
        theirs = as_user(SECOND, [group], sock, "POST", "/v1/jobs", body=later)
        assert theirs["status"] == 201, theirs

        # Recorded and shown: the JSON has the uid, the table the user's name.
        listed = json.loads(cli("jobs", "--json", sock=sock).stdout)
        assert {j["id"]: j["owner_uid"] for j in listed} == {
            job: NOBODY,
            theirs["body"]["id"]: SECOND,  # type: ignore[index]
        }
        table = cli("jobs", sock=sock).stdout
        assert any(job in line and "nobody" in line for line in table.splitlines()), table

        refused = as_user(SECOND, [group], sock, "POST", f"/v1/jobs/{job}/cancel")
        assert refused["status"] == 403
        assert "only its owner, root or the broker's own user" in str(refused["body"])
        assert as_user(OUTSIDER, [], sock, "GET", "/v1/jobs") == {"status": "denied"}

        own = as_user(NOBODY, [group], sock, "POST", f"/v1/jobs/{job}/cancel")
        assert own == {"status": 200, "body": {"state": "cancelled"}}
        by_root = cli("cancel", str(theirs["body"]["id"]), sock=sock)  # type: ignore[index]
        assert by_root.returncode == 0, by_root.stderr
        assert "cancelled" in by_root.stdout
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_unknown_group_is_a_usage_error(sim_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "gpuherd.yaml"
    config.write_text("version: 1\ngpus: [{name: gpu0, index: 0}]\n")
    done = subprocess.run(
        gpuherd_argv(
            "serve", "-c", str(config), "--backend", "sim", "--sim-dir", str(sim_dir),
            "--state", str(tmp_path / "state"), "--socket", str(tmp_path / "s.sock"),
            "--socket-group", "no-such-group-here",
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--socket-group no-such-group-here: no such group" in done.stderr
    assert "groupadd no-such-group-here" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "s.sock").exists()
