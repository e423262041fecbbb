"""`gpuherd serve` and its clients as real processes on the sim backend."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.conftest import gpuherd_argv


def cli(*args: str, sock: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        gpuherd_argv(*args),
        env={**os.environ, "GPUHERD_SOCKET": str(sock)},  # not --socket: it would land after --
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def start_serve(config: Path, sim_dir: Path, state: Path, sock: Path) -> subprocess.Popen[str]:
    where = ["--sim-dir", str(sim_dir), "--state", str(state), "--socket", str(sock)]
    return subprocess.Popen(
        gpuherd_argv("serve", "-c", str(config), "--backend", "sim", *where),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_concurrent_submissions_all_run_once(sim_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "gpuherd.yaml"
    config.write_text("""\
version: 1
gpus: [{name: gpu0, index: 0}]
jobs:
  tiny: {gpu: gpu0, vram: 1GiB, command: [/bin/true]}
""")
    sock = tmp_path / "gpuherd.sock"
    server = start_serve(config, sim_dir, tmp_path / "state", sock)
    try:
        assert server.stdout is not None
        assert json.loads(server.stdout.readline())["event"] == "listening"
        threading.Thread(target=server.stdout.read, daemon=True).start()  # a line per event

        def submit(_i: int) -> str:
            with httpx.Client(
                transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://gpuherd"
            ) as client:
                job_id: str = client.post("/v1/jobs", json={"name": "tiny"}).json()["id"]
                return job_id

        with ThreadPoolExecutor(16) as pool:
            ids = list(pool.map(submit, range(80)))
        assert len(set(ids)) == 80
        deadline = time.monotonic() + 60
        while json.loads(cli("jobs", "--json", sock=sock).stdout) and time.monotonic() < deadline:
            time.sleep(0.1)
        ended = json.loads(cli("jobs", "--all", "--json", sock=sock).stdout)
        assert sorted(j["id"] for j in ended) == sorted(ids)
        assert {j["state"] for j in ended} == {"succeeded"}
        events = json.loads(cli("events", "--json", sock=sock).stdout)
        starts = Counter(e["job"] for e in events if e["kind"] == "job_starting")
        assert set(starts) == set(ids)
        assert set(starts.values()) == {1}  # each ran exactly once
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def test_serve_submit_wait_status_and_stop(sim_dir: Path, tmp_path: Path) -> None:
    hold = ", ".join(f"'{a}'" for a in gpuherd_argv("sim", "hold", "--sim-dir", str(sim_dir)))
    config = tmp_path / "gpuherd.yaml"
    config.write_text(f"""\
version: 1
gpus: [{{name: gpu0, index: 0, guard: {{min_free: 1GiB}}}}]
broker: {{poll_interval: 0.1s, allow_adhoc: true}}
jobs:
  quick: {{gpu: gpu0, vram: 2GiB, command: [{hold}, '--vram', '2GiB', '--for', '0.3s']}}
""")
    sock = tmp_path / "run" / "gpuherd.sock"
    server = start_serve(config, sim_dir, tmp_path / "state", sock)
    try:
        assert server.stdout is not None
        ready = json.loads(server.stdout.readline())
        assert ready == {
            "event": "listening",
            "socket": str(sock),
            "tcp": None,
            "state": str(tmp_path / "state"),
        }
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        done = cli("submit", "quick", "--wait", sock=sock)
        assert done.returncode == 0, done.stderr
        job_id = done.stdout.strip()
        status = json.loads(cli("status", "--json", sock=sock).stdout)
        assert status["jobs"] == []  # nothing queued or running any more
        assert "guard gpu0: keeps 1.0 GiB free" in cli("status", sock=sock).stdout
        events = cli("events", sock=sock).stdout
        assert "job_succeeded" in events
        assert "holding 2.0 GiB" in cli("logs", job_id, sock=sock).stdout
        # Ad hoc: a command that is not in the config, as the daemon's user, no shell.
        code = "import os; print('hi from', os.environ['GPUHERD_JOB_ID'])"
        adhoc = cli(
            "submit", "--gpu", "gpu0", "--vram", "1GiB", "--name", "probe", "--wait",
            "--", sys.executable, "-c", code, sock=sock,
        )  # fmt: skip
        assert adhoc.returncode == 0, adhoc.stderr
        adhoc_id = adhoc.stdout.strip()
        assert f"hi from {adhoc_id}" in cli("logs", adhoc_id, sock=sock).stdout
        listed = json.loads(cli("jobs", "--all", "--json", sock=sock).stdout)
        assert {(j["name"], j["adhoc"], j["state"]) for j in listed} == {
            ("quick", False, "succeeded"),
            ("probe", True, "succeeded"),
        }
        bad = cli("submit", "--gpu", "gpu0", "--vram", "lots", "--", "true", sock=sock)
        assert bad.returncode == 2
        assert "adhoc.vram:" in bad.stderr
        nogpu = cli("submit", "--gpu", "gpu7", "--vram", "1GiB", "--", "true", sock=sock)
        assert nogpu.returncode == 2
        assert "adhoc.gpu: no GPU named 'gpu7' in the config (known: gpu0)" in nogpu.stderr
        unknown = cli("submit", "nope", sock=sock)
        assert unknown.returncode == 2
        assert "no job named 'nope'" in unknown.stderr
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
        assert not sock.exists()
        # The foreground log: one JSON object per line, every journal event, then "stopped".
        log = [json.loads(line) for line in server.stdout.read().splitlines()]
        assert log[-1] == {"event": "stopped"}
        kinds = [(r["event"], r.get("job")) for r in log]
        assert ("job_succeeded", job_id) in kinds
        assert ("job_succeeded", adhoc_id) in kinds
        assert all(isinstance(r["at"], float) for r in log[:-1])
        assert "Traceback" not in server.stderr.read()  # type: ignore[union-attr]
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    gone = cli("status", sock=sock)
    assert gone.returncode == 4
    assert "no broker answers at" in gone.stderr
