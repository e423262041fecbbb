"""The engine end to end on the sim GPU: release, run, restore; preflight first; replay."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpuherd.broker.engine import Engine
from gpuherd.broker.journal import Journal
from gpuherd.gpu.sim import SimBackend, SimHost
from gpuherd.spec import parse_config
from tests.conftest import GIB, HolderFactory, gpuherd_argv, wait_for


def used(sim_dir: Path) -> int:
    with SimHost(sim_dir) as host:
        return host.snapshot().devices[0].memory_used


@pytest.fixture
def ollama(sim_dir: Path) -> Iterator[str]:
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


def config_text(sim_dir: Path, ollama_url: str, extra_job: str = "") -> str:
    hold = ", ".join(f"'{a}'" for a in gpuherd_argv("sim", "hold", "--sim-dir", str(sim_dir)))
    return f"""\
version: 1
gpus: [{{name: gpu0, index: 0}}]
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
    vram: 6GiB
    priority: 50
    timeout: 60s
    command: [{hold}, '--vram', '6GiB', '--for', '1.5s', '--name', 'render']
    success: [{{exit_code: 0}}, {{not_on_cpu: 30s}}]
{extra_job}"""


def engine_for(text: str, sim_dir: Path, state: Path) -> Engine:
    config = parse_config(text, source="gpuherd.yaml")
    return Engine(
        config=config,
        backend=SimBackend(sim_dir),
        journal=Journal(state / "journal.db"),
        state_dir=state,
        poll=0.05,
    )


def test_render_releases_ollama_runs_and_restores(
    sim_dir: Path, holder: HolderFactory, ollama: str, tmp_path: Path
) -> None:
    holder("--vram", "2GiB", "--name", "plex")
    holder("--vram", "3GiB", "--name", "whisper")
    assert used(sim_dir) == 9 * GIB
    engine = engine_for(config_text(sim_dir, ollama), sim_dir, tmp_path / "state")
    job = engine.submit("render")
    engine.run_until_idle(timeout=60)
    row = engine.journal.job(job)
    assert row is not None
    assert (row.state, row.exit_code, row.reason) == ("succeeded", 0, None)
    story = [(e.kind, e.tenant) for e in engine.journal.events()]
    assert story == [
        ("submitted", None),
        ("job_releasing", None),
        ("release_intent", "ollama"),
        ("released", "ollama"),  # only the lowest priority
        ("job_starting", None),
        ("job_running", None),
        ("job_restoring", None),
        ("restore_started", "ollama"),
        ("restored", "ollama"),
        ("job_succeeded", None),
    ]
    assert used(sim_dir) == 9 * GIB  # ollama's model is back, the render's memory is gone
    (release,) = engine.journal.releases()
    assert release.detail["models"][0]["model"] == "llama3"


def test_preflight_failure_touches_no_tenant(
    sim_dir: Path, holder: HolderFactory, ollama: str, tmp_path: Path
) -> None:
    holder("--vram", "3GiB", "--name", "whisper")
    text = config_text(sim_dir, ollama).replace(
        "    success: [", "    preflight: [{exists: factorio/bin/x64/factorio}]\n    success: ["
    )
    engine = engine_for(text, sim_dir, tmp_path / "state")
    job = engine.submit("render")
    engine.run_until_idle(timeout=30)
    row = engine.journal.job(job)
    assert row is not None
    assert row.state == "failed"
    assert row.reason is not None
    assert row.reason.startswith("preflight: exists factorio/bin/x64/factorio:")
    assert engine.journal.releases() == []
    assert used(sim_dir) == 7 * GIB


def test_replay_restores_a_tenant_a_crash_left_released(
    sim_dir: Path, holder: HolderFactory, ollama: str, tmp_path: Path
) -> None:
    whisper = holder("--vram", "3GiB", "--name", "whisper")
    state = tmp_path / "state"
    engine = engine_for(config_text(sim_dir, ollama), sim_dir, state)
    job = engine.submit("render")
    # What a broker killed right after releasing whisper leaves behind:
    engine.journal.set_job_state(job, "releasing")
    release = engine.journal.release_intent(job, "whisper", "signal")
    whisper.terminate()
    whisper.wait(timeout=10)
    engine.journal.mark_released(release, method="signal", detail={"held": 3 * GIB})
    engine.journal.close()
    assert used(sim_dir) == 4 * GIB  # only ollama
    restarted = engine_for(config_text(sim_dir, ollama), sim_dir, state)
    restarted.replay()
    wait_for(lambda: used(sim_dir) == 7 * GIB)
    row = restarted.journal.job(job)
    assert row is not None
    assert (row.state, row.reason) == ("failed", "broker-restart")
    assert restarted.journal.pending_restores() == []
    kinds = [e.kind for e in restarted.journal.events()]
    assert kinds[-4:] == ["job_restoring", "restore_started", "restored", "job_failed"]
