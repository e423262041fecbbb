"""deploy/systemd/gpuherd.service: systemd accepts it, and its command line is one `gpuherd
serve` understands, with the socket and state where the unit's directories are."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import gpuherd_argv

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "gpuherd.service"


def settings() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def test_runs_serve_with_state_socket_and_group_in_the_units_directories() -> None:
    unit = settings()
    argv = shlex.split(unit["ExecStart"][0])
    assert argv[:2] == ["/usr/local/bin/gpuherd", "serve"]
    opts = dict(zip(argv[2::2], argv[3::2], strict=True))
    assert opts["-c"] == "/etc/gpuherd/gpuherd.yaml"
    assert opts["--state"] == f"/var/lib/{unit['StateDirectory'][0]}"
    assert Path(opts["--socket"]).parent == Path("/run") / unit["RuntimeDirectory"][0]
    assert opts["--socket-group"] == "gpuherd"
    assert unit["Restart"] == ["on-failure"]
    assert unit["StandardOutput"] == ["journal"]
    assert unit["KillMode"] == ["process"]  # a restart must not kill jobs and tenants
    # What would stop it seeing, signalling or starting GPU processes is not there.
    for blocked in ("PrivateDevices", "ProtectProc", "PrivateUsers", "MemoryDenyWriteExecute"):
        assert blocked not in unit
    helped = subprocess.run(
        gpuherd_argv("serve", "--help"), capture_output=True, text=True, check=True
    ).stdout
    for flag in opts:
        assert flag in helped


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    # The real path of the executable here, so verify checks it exists and runs.
    here = shutil.which("gpuherd") or str(Path(gpuherd_argv()[0]).parent / "gpuherd")
    unit = tmp_path / "gpuherd.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/gpuherd", here))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        timeout=60,
    )
    assert (done.returncode, done.stderr.strip()) == (0, ""), done.stderr
