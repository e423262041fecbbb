"""The README's main job: a simulated GPU with real workload processes, shown by `gpuherd gpus`.

Every step runs the real `gpuherd` command in a subprocess, so the demo exercises exactly what a
user types, and it always cleans up its processes and temporary directory.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

_DEMO_CONFIG = """\
version: 1
gpus:
  - {name: gpu0, index: 0, memory: 12GiB, reserve: 512MiB}
tenants:
  ollama:
    gpu: gpu0
    vram: {typical: 2GiB, peak: 4GiB}
    priority: 10
    match: {cmdline: "--name ollama"}
  whisper:
    gpu: gpu0
    vram: 3GiB
    priority: 20
    match: {cmdline: "--name whisper"}
"""


def _gpuherd(*args: str) -> list[str]:
    return [sys.executable, "-m", "gpuherd", *args]


def _wait_holding(proc: subprocess.Popen[str]) -> str:
    """The holder's 'holding ...' line; readline returns once it prints it or exits."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("holding"):
        proc.wait(timeout=10)
        raise RuntimeError(f"holder failed to start (exit {proc.returncode})")
    return line.strip()


def run_demo(console: Console | None = None) -> int:
    out = console or Console(highlight=False)
    workdir = Path(tempfile.mkdtemp(prefix="gpuherd-demo-"))
    sim = str(workdir / "sim")
    config = workdir / "gpuherd.yaml"
    config.write_text(_DEMO_CONFIG)
    holders: list[subprocess.Popen[str]] = []
    started = time.monotonic()
    try:
        out.rule("gpuherd demo: one simulated 12 GiB GPU")
        subprocess.run(
            _gpuherd("sim", "init", "--sim-dir", sim, "--gpu", "NVIDIA GeForce RTX 3080 Ti:12GiB"),
            check=True,
        )
        for name, vram in (("ollama", "4GiB"), ("whisper", "3GiB")):
            out.print(f"$ gpuherd sim hold --gpu 0 --vram {vram} --name {name}")
            proc = subprocess.Popen(
                _gpuherd(
                    "sim",
                    "hold",
                    "--sim-dir",
                    sim,
                    "--gpu",
                    "0",
                    "--vram",
                    vram,
                    "--name",
                    name,
                    "--ramp",
                    "0.5s",
                ),
                stdout=subprocess.PIPE,
                text=True,
            )
            holders.append(proc)
            out.print(f"  {_wait_holding(proc)}")
        out.print("$ gpuherd gpus -c gpuherd.yaml --backend sim")
        subprocess.run(
            _gpuherd("gpus", "-c", str(config), "--backend", "sim", "--sim-dir", sim), check=True
        )
        out.print(
            "$ gpuherd sim hold --gpu 0 --vram 8GiB --name render   "
            "[dim](does not fit: 5 GiB free)[/]"
        )
        oom = subprocess.run(
            _gpuherd(
                "sim",
                "hold",
                "--sim-dir",
                sim,
                "--gpu",
                "0",
                "--vram",
                "8GiB",
                "--name",
                "render",
                "--for",
                "1s",
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        out.print(f"  exit {oom.returncode}: {oom.stderr.strip()}", markup=False)
        out.print("stopping the workloads (SIGTERM) ...")
        for proc in holders:
            proc.terminate()
        for proc in holders:
            proc.wait(timeout=10)
        subprocess.run(_gpuherd("gpus", "--backend", "sim", "--sim-dir", sim), check=True)
        out.rule(f"demo finished in {time.monotonic() - started:.1f}s")
        return 0
    except (RuntimeError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        out.print(f"[bold red]demo failed:[/] {exc}")
        return 1
    finally:
        for proc in holders:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)
