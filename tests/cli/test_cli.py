"""The `gpuherd` command as a user runs it: real processes, real sim host, exit codes."""

from __future__ import annotations

import ctypes.util
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import GIB, HolderFactory, gpuherd_argv, wait_for

ROOT = Path(__file__).resolve().parents[2]


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": "160", **(env or {})}
    full_env.pop("GPUHERD_BACKEND", None)
    return subprocess.run(
        gpuherd_argv(*args),
        capture_output=True,
        text=True,
        check=False,
        env=full_env,
        timeout=timeout,
    )


def test_help_lists_every_command() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command, blurb in (
        ("gpus", "Show each GPU's memory"),
        ("validate", "Validate gpuherd.yaml"),
        ("sim", "Simulated GPUs"),
        ("demo", "Run the demo"),
    ):
        assert any(
            line.strip(" │").startswith(command) and blurb in line
            for line in result.stdout.splitlines()
        ), command
    assert "Exit codes" in result.stdout


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == "gpuherd 0.1.0"


def test_validate_ok_prints_summary(tmp_path: Path) -> None:
    # The homelab example without its Kubernetes methods: those need `serve --kubernetes`.
    lines = (ROOT / "examples" / "homelab.yaml").read_text().splitlines(keepends=True)
    config = tmp_path / "homelab.yaml"
    kept = "".join(line for line in lines if "- kubernetes:" not in line)
    config.write_text(kept.replace("    preempt:\n\n", "    preempt: []\n\n"))
    result = run("validate", "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert "valid (version 1)" in result.stdout
    for name in ("plex", "ollama", "vllm", "mapshot-render", "gpu01-ada"):
        assert name in result.stdout


def test_validate_errors_are_positioned_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "gpuherd.yaml"
    bad.write_text("version: 1\ntenants:\n  x:\n    vram: 4 parsecs\n    prioirty: 1\n")
    result = run("validate", "-c", str(bad))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{bad}:4:11: tenants.x.vram.typical: unknown size unit 'parsecs' in '4 parsecs'; use B, KiB, MiB, GiB, TiB or G",
        f"{bad}:5:5: tenants.x.prioirty: unknown field 'prioirty'; did you mean 'priority'?",
        f"{bad}: 2 problems; nothing was changed",
    ]
    assert "Traceback" not in result.stderr


def test_validate_missing_file() -> None:
    result = run("validate", "-c", "/nonexistent/gpuherd.yaml")
    assert result.returncode == 2
    assert "cannot read file: No such file or directory" in result.stderr


DEMO_CONFIG = """\
version: 1
gpus:
  - {name: big, index: 1, memory: 20GiB}
tenants:
  ollama: {vram: 4GiB, match: {cmdline: "--name ollama"}}
  whisper: {vram: 3GiB, match: {cmdline: "--name whisper"}}
"""


def test_gpus_json_two_devices_three_holders(
    sim_dir: Path, holder: HolderFactory, tmp_path: Path
) -> None:
    config = tmp_path / "gpuherd.yaml"
    config.write_text(DEMO_CONFIG)
    a = holder("--gpu", "0", "--vram", "4GiB", "--name", "ollama")
    b = holder("--gpu", "0", "--vram", "3GiB", "--name", "whisper")
    c = holder("--gpu", "1", "--vram", "6GiB", "--name", "render")
    result = run("gpus", "--json", "--backend", "sim", "--sim-dir", str(sim_dir), "-c", str(config))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["version"] == 1
    assert data["backend"] == "sim"
    gpu0, gpu1 = data["gpus"]
    assert (gpu0["index"], gpu0["name"], gpu0["config_name"]) == (
        0,
        "NVIDIA GeForce RTX 3080 Ti",
        None,
    )
    assert gpu0["memory"] == {"total": 12 * GIB, "used": 7 * GIB, "free": 5 * GIB, "reserved": 0}
    assert gpu1["config_name"] == "big"
    assert gpu1["memory"]["used"] == 6 * GIB
    procs0 = {p["pid"]: p for p in gpu0["processes"]}
    assert {pid: (p["used_bytes"], p["name"], p["tenant"]) for pid, p in procs0.items()} == {
        a.pid: (4 * GIB, "ollama", "ollama"),
        b.pid: (3 * GIB, "whisper", "whisper"),
    }
    (p1,) = gpu1["processes"]
    assert (p1["pid"], p1["used_bytes"], p1["name"], p1["tenant"]) == (
        c.pid,
        6 * GIB,
        "render",
        None,
    )
    for proc in (*gpu0["processes"], p1):
        assert {"pid", "used_bytes", "name", "tenant", "container", "pod"} <= set(proc)
        assert isinstance(proc["used_bytes"], int)


def test_gpus_text(sim_dir: Path, holder: HolderFactory) -> None:
    proc = holder("--gpu", "0", "--vram", "4GiB", "--name", "ollama")
    result = run("gpus", "--backend", "sim", "--sim-dir", str(sim_dir))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(
        "GPU 0" in line and "4.0 GiB / 12.0 GiB" in line and "free 8.0 GiB" in line
        for line in lines
    )
    assert any(
        line.split()[:1] == [str(proc.pid)] and "ollama" in line and "4.0 GiB" in line
        for line in lines
    )
    assert any("GPU 1" in line and "0 B / 20.0 GiB" in line for line in lines)
    assert "backend sim" in result.stdout


def test_gpus_watch_redraws_until_interrupted(sim_dir: Path, holder: HolderFactory) -> None:
    watcher = subprocess.Popen(
        gpuherd_argv("gpus", "--backend", "sim", "--sim-dir", str(sim_dir), "--watch", "0.1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "160"},
    )
    try:
        time.sleep(1.0)  # first draw shows nothing held
        late = holder("--gpu", "1", "--vram", "2GiB", "--name", "latecomer")
        time.sleep(0.8)
        watcher.send_signal(signal.SIGINT)
        out, err = watcher.communicate(timeout=10)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 0, err
    assert "Traceback" not in err
    # The last frame shows the holder that started after the watch began.
    assert f"{late.pid}" in out
    assert "latecomer" in out


def test_bare_watch_flag_is_accepted(sim_dir: Path) -> None:
    watcher = subprocess.Popen(
        gpuherd_argv("gpus", "--watch", "--backend", "sim", "--sim-dir", str(sim_dir)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    # Interrupt it once it reads the GPUs (past its imports, however slow the machine): it
    # has the simulated GPUs' database open then. Not before.
    def reading() -> bool:
        try:
            fds = os.listdir(f"/proc/{watcher.pid}/fd")
        except OSError:
            return False
        return any(str(sim_dir) in os.path.realpath(f"/proc/{watcher.pid}/fd/{fd}") for fd in fds)

    wait_for(reading, timeout=60)
    watcher.send_signal(signal.SIGINT)
    _out, err = watcher.communicate(timeout=10)
    assert watcher.returncode == 0, err


@pytest.mark.skipif(
    ctypes.util.find_library("nvidia-ml") is not None, reason="this host has an NVIDIA driver"
)
def test_no_gpu_exits_3_with_hint() -> None:
    result = run("gpus")
    assert result.returncode == 3
    assert "no NVIDIA GPU backend" in result.stderr
    assert "libnvidia-ml.so.1" in result.stderr
    assert "--backend sim" in result.stderr
    assert "Traceback" not in result.stderr


def test_sim_backend_without_host_exits_3(tmp_path: Path) -> None:
    result = run("gpus", "--backend", "sim", "--sim-dir", str(tmp_path / "none"))
    assert result.returncode == 3
    assert "no simulated GPUs in" in result.stderr
    assert "gpuherd sim init" in result.stderr


def test_sim_init_rejects_bad_gpu_spec(tmp_path: Path) -> None:
    result = run("sim", "init", "--sim-dir", str(tmp_path / "s"), "--gpu", "RTX:12 furlongs")
    assert result.returncode == 2
    assert "unknown size unit 'furlongs'" in result.stderr
    assert not (tmp_path / "s").exists()
    result = run("sim", "init", "--sim-dir", str(tmp_path / "s"), "--gpu", "12GiB")
    assert result.returncode == 2
    assert "expected NAME:SIZE" in result.stderr


def test_sim_dir_from_environment(tmp_path: Path) -> None:
    env = {"GPUHERD_SIM_DIR": str(tmp_path / "envsim")}
    assert run("sim", "init", "--gpu", "Tiny GPU:1GiB", env=env).returncode == 0
    result = run("gpus", "--json", "--backend", "sim", env=env)
    assert json.loads(result.stdout)["gpus"][0]["name"] == "Tiny GPU"


def test_hold_rejects_bad_units(sim_dir: Path) -> None:
    result = run("sim", "hold", "--sim-dir", str(sim_dir), "--vram", "lots")
    assert result.returncode == 2
    assert "expected a size" in result.stderr


def test_hold_on_missing_gpu_index(sim_dir: Path) -> None:
    result = run("sim", "hold", "--sim-dir", str(sim_dir), "--gpu", "5", "--vram", "1GiB")
    assert result.returncode == 1
    assert "no simulated GPU 5 (this host has 2: 0..1)" in result.stderr


def test_demo_runs_and_cleans_up() -> None:
    result = run("demo", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.count("9.0 GiB / 12.0 GiB") == 2  # before, and after the tenants came back
    assert "render succeeded; timeline:" in out
    lines = [line.strip() for line in out.splitlines()]
    released = next(i for i, line in enumerate(lines) if line.startswith("released ollama in"))
    assert lines[released + 1].startswith("job ran ")
    assert lines[released + 2].startswith("restored ollama in")
    assert not any(line.startswith("released plex") for line in lines)


def test_pid_file_match_on_real_processes(
    sim_dir: Path, holder: HolderFactory, tmp_path: Path
) -> None:
    pid_file = tmp_path / "svc.pid"
    config = tmp_path / "gpuherd.yaml"
    config.write_text(
        f"version: 1\ntenants:\n  svc: {{vram: 1GiB, match: {{pid_file: {pid_file}}}}}\n"
    )
    mine = holder("--vram", "1GiB", "--pid-file", str(pid_file))
    other = holder("--vram", "1GiB")
    assert pid_file.read_text().strip() == str(mine.pid)
    data = json.loads(
        run(
            "gpus", "--json", "--backend", "sim", "--sim-dir", str(sim_dir), "-c", str(config)
        ).stdout
    )
    tenants = {p["pid"]: p["tenant"] for p in data["gpus"][0]["processes"]}
    assert tenants == {mine.pid: "svc", other.pid: None}
    mine.terminate()
    mine.wait(timeout=10)
    assert not pid_file.exists()  # the holder removes its pid file on a clean exit


EVERY_METHOD = """\
version: 1
tenants:
  t:
    vram: 1GiB
    preempt:
      - ollama: {}
      - vllm-sleep: {}
      - http: {preset: comfyui, url: "http://127.0.0.1:8188"}
      - command: {release: [stop], restore: [start]}
      - signal: {}
      - checkpoint: {}
      - kubernetes: {name: t}
"""


def test_validate_refuses_methods_this_gpuherd_cannot_run(tmp_path: Path) -> None:
    """Before, validate accepted checkpoint and kubernetes methods the broker then could not
    run ("could not release" at 4 AM). A config is valid only if everything in it can run."""
    from gpuherd.actuators.factory import ALL_MODES, unavailable_kinds

    config = tmp_path / "gpuherd.yaml"
    config.write_text(EVERY_METHOD)
    result = run("validate", "-c", str(config))
    cannot = unavailable_kinds(modes=ALL_MODES)
    order = ["ollama", "vllm-sleep", "http", "command", "signal", "checkpoint", "kubernetes"]
    expected = [
        f"{config}:{6 + i}:9: tenants.t.preempt[{i}].{kind}: {cannot[kind]}"
        for i, kind in enumerate(order)
        if kind in cannot
    ]
    assert result.returncode == (2 if expected else 0), result.stderr
    assert result.stderr.splitlines()[:-1] == expected
    assert "Traceback" not in result.stderr


def test_serve_names_the_methods_it_cannot_run(tmp_path: Path, sim_dir: Path) -> None:
    config = tmp_path / "gpuherd.yaml"
    config.write_text(EVERY_METHOD)
    result = run(
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
        str(tmp_path / "s.sock"),
    )
    assert result.returncode == 2
    assert (
        f"{config}:12:9: tenants.t.preempt[6].kubernetes: the kubernetes method " in result.stderr
    )
    assert not (tmp_path / "s.sock").exists()
