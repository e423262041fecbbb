"""The README's main job: the broker on a simulated GPU, from submit to restored tenants.

Everything runs as the real commands a user types (`gpuherd sim ...`, `gpuherd serve`,
`gpuherd submit --wait`), on a simulated 12 GiB GPU held by real processes, with a simulated
Ollama server on loopback. The demo cleans up every process and file it created.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

# An installed wheel carries the example inside the package; a checkout has it at the top.
_PACKAGED = Path(__file__).resolve().parent / "examples" / "demo.yaml"
EXAMPLE = (
    _PACKAGED
    if _PACKAGED.exists()
    else Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"
)


def _gpuherd(*args: str) -> list[str]:
    return [sys.executable, "-m", "gpuherd", *args]


def _own_argv(argv: list[str]) -> list[str]:
    """`gpuherd ...` in the example runs as this interpreter's `python -m gpuherd ...`."""
    return _gpuherd(*argv[1:]) if argv and argv[0] == "gpuherd" else argv


def _config(example: dict[str, Any], ollama_url: str) -> dict[str, Any]:
    for tenant in example["tenants"].values():
        for method in tenant.get("preempt", []):
            if "signal" in method and method["signal"].get("start"):
                method["signal"]["start"] = _own_argv(method["signal"]["start"])
            if "ollama" in method:
                method["ollama"]["url"] = ollama_url
    for job in example["jobs"].values():
        job["command"] = _own_argv(job["command"])
    return example


def _first_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line:
        proc.wait(timeout=10)
        raise RuntimeError(f"{proc.args!r} exited {proc.returncode} before it was ready")
    # Keep reading: the broker goes on logging a line per event, and a full pipe would stall it.
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return line


def _timeline(events: list[dict[str, Any]]) -> list[str]:
    at: dict[tuple[str, str | None], float] = {}
    for e in events:
        at.setdefault((e["kind"], e["tenant"]), e["at"])
    lines = []
    for (kind, tenant), t in at.items():
        if kind == "released":
            lines.append(f"released {tenant} in {t - at[('release_intent', tenant)]:.1f}s")
        if kind == "restored":
            lines.append(f"restored {tenant} in {t - at[('restore_started', tenant)]:.1f}s")
    if ("job_running", None) in at and ("job_restoring", None) in at:
        lines.insert(
            len([x for x in lines if x.startswith("released")]),
            f"job ran {at[('job_restoring', None)] - at[('job_running', None)]:.1f}s",
        )
    return lines


def run_demo(console: Console | None = None) -> int:
    out = console or Console(highlight=False)
    work = Path(tempfile.mkdtemp(prefix="gpuherd-demo-"))
    sim = str(work / "sim")
    env_sim = ["--sim-dir", sim]
    procs: list[subprocess.Popen[str]] = []
    started = time.monotonic()

    def spawn(argv: list[str]) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "GPUHERD_SIM_DIR": sim},
        )
        procs.append(proc)
        return proc

    try:
        out.rule("gpuherd demo: a 6 GiB render on a shared, simulated 12 GiB GPU")
        subprocess.run(
            _gpuherd("sim", "init", *env_sim, "--gpu", "NVIDIA GeForce RTX 3080 Ti:12GiB"),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        for name, vram in (("plex", "2GiB"), ("whisper", "3GiB")):
            _first_line(spawn(_gpuherd("sim", "hold", *env_sim, "--vram", vram, "--name", name)))
        ollama_port = _first_line(
            spawn(_gpuherd("sim", "app", "ollama", "llama3=4GiB", *env_sim))
        ).split()[1]
        config = work / "demo.yaml"
        config.write_text(
            yaml.safe_dump(
                _config(yaml.safe_load(EXAMPLE.read_text()), f"http://127.0.0.1:{ollama_port}")
            )
        )
        out.print("tenants: plex 2 GiB (never preempted), whisper 3 GiB, ollama 4 GiB; free: 3 GiB")
        subprocess.run(
            _gpuherd("gpus", "--backend", "sim", *env_sim, "-c", str(config)), check=True
        )
        sock = work / "gpuherd.sock"
        serve = spawn(
            _gpuherd(
                "serve",
                "-c",
                str(config),
                "--backend",
                "sim",
                *env_sim,
                "--state",
                str(work / "state"),
                "--socket",
                str(sock),
            )
        )
        json.loads(_first_line(serve))
        out.print("$ gpuherd submit render --wait")
        submitted = subprocess.run(
            _gpuherd("submit", "render", "--wait", "--socket", str(sock)),
            capture_output=True,
            text=True,
            check=False,
        )
        events = json.loads(
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import httpx, sys, json; c = httpx.Client(transport="
                    "httpx.HTTPTransport(uds=sys.argv[1]), base_url='http://g'); "
                    "print(json.dumps(c.get('/v1/events').json()))",
                    str(sock),
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        outcome = "succeeded" if submitted.returncode == 0 else "FAILED"
        out.print(f"render {outcome}; timeline:")
        for line in _timeline(events):
            out.print(f"  {line}")
        out.print("after the job, the tenants are back:")
        subprocess.run(
            _gpuherd("gpus", "--backend", "sim", *env_sim, "-c", str(config)), check=True
        )
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=30)
        out.rule(f"demo finished in {time.monotonic() - started:.1f}s")
        return 0 if submitted.returncode == 0 else 1
    except (RuntimeError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        out.print(f"[bold red]demo failed:[/] {exc}")
        return 1
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)
