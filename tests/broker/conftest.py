"""Shared by the broker tests: seed 000's host (Plex, Whisper, Ollama and a render)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpuherd.broker.engine import Engine
from gpuherd.broker.journal import Journal
from gpuherd.broker.states import JobState
from gpuherd.broker.submission import Submission
from gpuherd.gpu.sim import SimBackend
from gpuherd.ids import JobId, JobName
from gpuherd.spec import parse_config
from tests.conftest import gpuherd_argv


def engine_for(text: str, sim_dir: Path, state: Path) -> Engine:
    """An engine on the simulated GPU for the config `text`, its journal in `state`."""
    return Engine(
        config=parse_config(text, source="gpuherd.yaml"),
        backend=SimBackend(sim_dir),
        journal=Journal(state / "journal.db"),
        state_dir=state,
        poll=0.05,
    )


def submit(engine: Engine, name: str) -> JobId:
    """Queue a config job, as the API does (without a running daemon)."""
    return engine.journal.submit(Submission(job=JobName(name)))


def run_until_idle(engine: Engine, timeout: float = 60.0) -> None:
    """Step until no job is queued (unless waiting) or followed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        engine.step()
        queued = [j for j in engine.journal.jobs() if j.state is JobState.QUEUED]
        if not engine.followed and all(j.id in engine.waiting for j in queued):
            return
        time.sleep(engine.poll)
    raise TimeoutError("jobs still running")


@pytest.fixture
def ollama(sim_dir: Path) -> Iterator[str]:
    """A simulated Ollama with llama3 (4 GiB) loaded; yields its URL."""
    proc = subprocess.Popen(
        gpuherd_argv("sim", "app", "ollama", "llama3=4GiB", "--sim-dir", str(sim_dir)),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    port = proc.stdout.readline().split()[1]
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


def seed_config(
    sim_dir: Path,
    ollama_url: str,
    *,
    render: str = "6GiB",
    run_for: str = "1.5s",
    broker: str = "{}",
    render_extra: str = "",
    extra_job: str = "",
) -> str:
    """Plex 2 GiB (not preemptible), Whisper 3 GiB (signal), Ollama 4 GiB (ollama method) on a
    12 GiB GPU, and a `render` job at priority 50 that holds `render` for `run_for`."""
    hold = ", ".join(f"'{a}'" for a in gpuherd_argv("sim", "hold", "--sim-dir", str(sim_dir)))
    return f"""\
version: 1
gpus: [{{name: gpu0, index: 0}}]
broker: {broker}
tenants:
  plex: {{gpu: gpu0, vram: 2GiB, priority: 100, preemptible: false, match: {{cmdline: "--name plex"}}}}
  whisper:
    gpu: gpu0
    vram: 3GiB
    priority: 20
    cooldown: 0s
    match: {{cmdline: "--name whisper"}}
    preempt: [{{signal: {{grace: 5s, start: [{hold}, '--vram', '3GiB', '--name', 'whisper']}}}}]
  ollama:
    gpu: gpu0
    vram: 4GiB
    priority: 10
    cooldown: 0s
    match: {{cmdline: "sim app ollama"}}
    preempt: [{{ollama: {{url: "{ollama_url}"}}}}]
jobs:
  render:
    gpu: gpu0
    vram: {render}
    priority: 50
    timeout: 60s
    command: [{hold}, '--vram', '{render}', '--for', '{run_for}', '--name', 'render']
{render_extra}{extra_job}"""
