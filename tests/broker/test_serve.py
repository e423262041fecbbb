"""`gpuherd serve` and its clients as real processes on the sim backend."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

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


def test_serve_submit_wait_status_and_stop(sim_dir: Path, tmp_path: Path) -> None:
    hold = ", ".join(f"'{a}'" for a in gpuherd_argv("sim", "hold", "--sim-dir", str(sim_dir)))
    config = tmp_path / "gpuherd.yaml"
    config.write_text(f"""\
version: 1
gpus: [{{name: gpu0, index: 0}}]
broker: {{poll_interval: 0.1s, allow_adhoc: true}}
jobs:
  quick: {{gpu: gpu0, vram: 2GiB, command: [{hold}, '--vram', '2GiB', '--for', '0.3s']}}
""")
    sock = tmp_path / "run" / "gpuherd.sock"
    server = subprocess.Popen(
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
            "--socket",
            str(sock),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
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
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    gone = cli("status", sock=sock)
    assert gone.returncode == 4
    assert "no broker answers at" in gone.stderr
