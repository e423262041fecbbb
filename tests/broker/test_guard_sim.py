"""The headroom guard on seed 001's card (12 GiB: Plex, Whisper, Ollama), with real processes on
the simulated GPU: a transcode grows Plex, the guard unloads Ollama's model through Ollama's own
API, Plex's allocation then succeeds, and the model comes back once the transcode ends; a busy
Ollama is kept while an idle Whisper goes; a broker killed with -9 while Ollama is released by
the guard brings it back after the restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from gpuherd.broker.engine import Engine
from gpuherd.broker.guard import guard_job_id
from gpuherd.broker.journal import Journal
from gpuherd.broker.metrics import BrokerCollector
from gpuherd.broker.states import ReleaseState
from gpuherd.gpu.sim import SimBackend, SimHost
from gpuherd.spec.load import parse_config
from tests.broker.test_crash import serve
from tests.conftest import GIB, HolderFactory, gpuherd_argv
from tests.leaks import end

# A transcode: grows by `chunk` until it holds `total`, retrying an allocation that finds no
# room (as Plex buffers and retries), then holds until SIGTERM.
TRANSCODE = """\
import os, signal, sys, time
from pathlib import Path
from gpuherd.gpu.sim import SimHost, SimOutOfMemory
sim, total, chunk = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
host = SimHost(sim)
held = 0
while held < total and not stop:
    try:
        host.allocate(pid=os.getpid(), gpu=0, nbytes=chunk, name="plex")
        held += chunk
    except SimOutOfMemory:
        time.sleep(0.02)
print(f"grown {time.time()}", flush=True)
while not stop:
    time.sleep(0.05)
host.forget(pid=os.getpid())
"""

GUARD = "{min_free: 2GiB, for: 0.5s, restore_above: 0.5GiB, restore_after: 1s, flaps_per_hour: 1}"


@pytest.fixture
def ollama_app(sim_dir: Path) -> Iterator[tuple[str, int]]:
    """A simulated Ollama with llama3 (4 GiB) loaded; yields its URL and pid."""
    proc = subprocess.Popen(
        gpuherd_argv("sim", "app", "ollama", "llama3=4GiB", "--sim-dir", str(sim_dir)),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    port = proc.stdout.readline().split()[1]
    yield f"http://127.0.0.1:{port}", proc.pid
    proc.terminate()
    proc.wait(timeout=10)
    proc.stdout.close()


def guard_config(sim_dir: Path, ollama_url: str, *, poll: str = "0.05s") -> str:
    hold = ", ".join(f"'{a}'" for a in gpuherd_argv("sim", "hold", "--sim-dir", str(sim_dir)))
    return f"""\
version: 1
gpus: [{{name: gpu0, index: 0, guard: {GUARD}}}]
broker: {{poll_interval: {poll}}}
tenants:
  plex:
    gpu: gpu0
    vram: 1GiB
    priority: 100
    preemptible: false
    headroom: 1GiB
    match: {{cmdline: "--name plex|plex-transcode"}}
  whisper:
    gpu: gpu0
    vram: 3GiB
    priority: 50
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
"""


def held(sim_dir: Path) -> dict[str, int]:
    with SimHost(sim_dir) as host:
        snap = host.snapshot()
    out: dict[str, int] = {}
    for p in snap.processes:
        out[p.name or "?"] = out.get(p.name or "?", 0) + (p.used_bytes or 0)
    return {name: n for name, n in out.items() if n}


def transcode(sim_dir: Path, tmp_path: Path, total: int) -> subprocess.Popen[str]:
    script = tmp_path / "plex-transcode.py"
    script.write_text(TRANSCODE)
    argv = [sys.executable, str(script), str(sim_dir), str(total), str(GIB // 2)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)


def step_until(engine: Engine, done: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        engine.step()
        if done():
            return time.monotonic() - start
        time.sleep(engine.poll)
    raise AssertionError(f"not within {timeout}s: {[e.message for e in engine.journal.events()]}")


def engine_for(text: str, sim_dir: Path, state: Path) -> Engine:
    return Engine(
        config=parse_config(text, source="gpuherd.yaml"),
        backend=SimBackend(sim_dir),
        journal=Journal(state / "journal.db"),
        state_dir=state,
        poll=0.05,
    )


def test_a_transcode_gets_its_room_and_ollama_comes_back_after_it(
    sim_dir: Path, holder: HolderFactory, ollama_app: tuple[str, int], tmp_path: Path
) -> None:
    url, _pid = ollama_app
    holder("--vram", "1GiB", "--name", "plex")
    holder("--vram", "3GiB", "--name", "whisper")
    assert held(sim_dir) == {"plex": GIB, "whisper": 3 * GIB, "ollama": 4 * GIB}
    engine = engine_for(guard_config(sim_dir, url), sim_dir, tmp_path / "state")
    engine.step()
    assert engine.journal.releases() == []  # 4 GiB free: nothing to do
    # Plex grows by 4.5 GiB; past 4 GiB only a release makes room.
    grown = transcode(sim_dir, tmp_path, 9 * GIB // 2)
    try:
        took = step_until(engine, lambda: held(sim_dir).get("ollama", 0) == 0, timeout=15)
        assert took < 0.5 + 5  # `for` + the release itself, with room for a slow machine
        assert grown.stdout is not None
        assert grown.stdout.readline().startswith("grown")  # plex's allocation succeeded
        assert held(sim_dir) == {"plex": 11 * GIB // 2, "whisper": 3 * GIB}  # whisper kept
        (release,) = engine.journal.releases()
        assert (release.tenant, release.job_id, release.state) == (
            "ollama",
            guard_job_id("gpu0"),
            ReleaseState.RELEASED,
        )
        assert release.detail["models"][0]["model"] == "llama3"
        tenants = {t.name: t.state for t in engine_views(engine).tenants()}
        assert tenants["ollama"] == "released"
        # Plex still transcodes: 3.5 GiB free is less than 4 + 2 + 0.5, so ollama stays down.
        for _ in range(30):
            engine.step()
        assert held(sim_dir).get("ollama", 0) == 0
    finally:
        grown.send_signal(signal.SIGTERM)
        grown.wait(timeout=10)
        if grown.stdout is not None:
            grown.stdout.close()
    start = time.monotonic()
    step_until(engine, lambda: held(sim_dir).get("ollama", 0) == 4 * GIB, timeout=20)
    assert time.monotonic() - start >= 1.0  # not before `restore_after`
    (release,) = engine.journal.releases()
    assert release.state is ReleaseState.RESTORED
    kinds = [e.kind for e in engine.journal.events()]
    assert kinds.count("guard_release") == 1
    assert kinds.count("guard_restore") == 1
    views = engine_views(engine)
    assert [j.name for j in views.jobs(include_ended=True)] == []  # not a job
    (guard,) = json.loads(json.dumps(views.status().to_dict()))["guard"]  # as the API sends it
    assert (guard["released"], guard["releases_last_hour"], guard["flapping"]) == ([], 1, [])
    # A second transcode within the hour: more than `flaps_per_hour` (1) guard releases.
    again = transcode(sim_dir, tmp_path, 9 * GIB // 2)
    try:
        step_until(engine, lambda: held(sim_dir).get("ollama", 0) == 0, timeout=15)
    finally:
        again.send_signal(signal.SIGTERM)
        again.wait(timeout=10)
        if again.stdout is not None:
            again.stdout.close()
    (guard,) = json.loads(json.dumps(views.status().to_dict()))["guard"]
    assert (guard["released"], guard["flapping"]) == (["ollama"], ["ollama"])
    (flap,) = [e for e in engine.journal.events() if e.kind == "guard_flapping"]
    assert "2 guard releases in the last hour (more than 1), of ollama" in flap.message
    registry = CollectorRegistry()
    registry.register(BrokerCollector(views))
    scraped = generate_latest(registry).decode()
    assert "gpuherd_guard_flaps_total 1.0" in scraped
    assert 'gpuherd_guard_flapping{gpu="gpu0",tenants="ollama"} 1.0' in scraped
    # A request loads the model again while the guard holds Ollama released (the transcode
    # is over): the release is over, and status says so at once.
    httpx.post(f"{url}/api/generate", json={"model": "llama3"}, timeout=10).raise_for_status()
    engine.step()
    assert engine.journal.releases(open_only=True) == []
    assert {t.name: t.state for t in views.tenants()}["ollama"] == "running"


def test_a_busy_ollama_is_kept_while_an_idle_whisper_is_released(
    sim_dir: Path, holder: HolderFactory, ollama_app: tuple[str, int], tmp_path: Path
) -> None:
    url, pid = ollama_app
    holder("--vram", "1GiB", "--name", "plex")
    holder("--vram", "3GiB", "--name", "whisper")
    with SimHost(sim_dir) as host:
        host.set_util(pid=pid, gpu=0, util=60)  # a generation in flight
    engine = engine_for(guard_config(sim_dir, url), sim_dir, tmp_path / "state")
    grown = transcode(sim_dir, tmp_path, 9 * GIB // 2)
    try:
        step_until(engine, lambda: held(sim_dir).get("whisper", 0) == 0, timeout=15)
        assert held(sim_dir).get("ollama") == 4 * GIB
        assert [r.tenant for r in engine.journal.releases()] == ["whisper"]
    finally:
        grown.send_signal(signal.SIGTERM)
        grown.wait(timeout=10)
        if grown.stdout is not None:
            grown.stdout.close()
    # Whisper comes back by its own start command once the room is there.
    step_until(engine, lambda: held(sim_dir).get("whisper", 0) == 3 * GIB, timeout=30)
    with SimHost(sim_dir) as host:  # the restored whisper runs detached: end it here
        end([p.pid for p in host.snapshot().processes if p.name == "whisper"])


def test_kill_9_while_ollama_is_released_by_the_guard_and_it_comes_back(
    sim_dir: Path, holder: HolderFactory, ollama_app: tuple[str, int], tmp_path: Path
) -> None:
    url, _pid = ollama_app
    holder("--vram", "1GiB", "--name", "plex")
    holder("--vram", "3GiB", "--name", "whisper")
    cfg = tmp_path / "gpuherd.yaml"
    cfg.write_text(guard_config(sim_dir, url, poll="0.1s"))
    state, sock = tmp_path / "state", tmp_path / "gpuherd.sock"
    state.mkdir(mode=0o700)
    grown = transcode(sim_dir, tmp_path, 9 * GIB // 2)
    first = serve(cfg, sim_dir, state, sock, crash=None)
    second: subprocess.Popen[str] | None = None
    try:
        deadline = time.monotonic() + 20
        while held(sim_dir).get("ollama", 0) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert held(sim_dir).get("ollama", 0) == 0
        os.kill(first.pid, signal.SIGKILL)
        assert first.wait(timeout=10) == -9
        # The transcode ends while the broker is down.
        grown.send_signal(signal.SIGTERM)
        grown.wait(timeout=10)
        second = serve(cfg, sim_dir, state, sock, crash=None)
        deadline = time.monotonic() + 30
        while held(sim_dir).get("ollama", 0) != 4 * GIB and time.monotonic() < deadline:
            time.sleep(0.1)
        assert held(sim_dir).get("ollama") == 4 * GIB
        journal = Journal(state / "journal.db")
        (release,) = journal.releases()
        assert (release.job_id, release.state) == (guard_job_id("gpu0"), ReleaseState.RESTORED)
        journal.close()
    finally:
        for proc in (first, second, grown):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=20)
            for stream in (proc.stdout, proc.stderr) if proc is not None else ():
                if stream is not None:
                    stream.close()


def engine_views(engine: Engine):  # type: ignore[no-untyped-def]
    from gpuherd.broker.views import EngineHealth, Views

    return Views(
        config=engine.config,
        journal=engine.journal,
        published=lambda: engine.published,
        health=EngineHealth,
    )


def test_a_crash_between_the_intent_and_the_release_is_finished_after_restart(
    sim_dir: Path, holder: HolderFactory, ollama_app: tuple[str, int], tmp_path: Path
) -> None:
    url, _pid = ollama_app
    holder("--vram", "1GiB", "--name", "plex")
    holder("--vram", "3GiB", "--name", "whisper")
    cfg = tmp_path / "gpuherd.yaml"
    cfg.write_text(guard_config(sim_dir, url, poll="0.1s"))
    state, sock = tmp_path / "state", tmp_path / "gpuherd.sock"
    state.mkdir(mode=0o700)
    grown = transcode(sim_dir, tmp_path, 9 * GIB // 2)
    first = serve(cfg, sim_dir, state, sock, crash="after_intent")
    second: subprocess.Popen[str] | None = None
    try:
        assert first.wait(timeout=60) == -9  # died with the intent journaled, nothing done
        assert held(sim_dir).get("ollama") == 4 * GIB
        second = serve(cfg, sim_dir, state, sock, crash=None)
        # The half-done release is closed (ollama still holds its model), then the pressure,
        # still there, releases it for real.
        deadline = time.monotonic() + 30
        while held(sim_dir).get("ollama", 0) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert held(sim_dir).get("ollama", 0) == 0
        journal = Journal(state / "journal.db")
        first_row, second_row = journal.releases()
        assert (first_row.state, second_row.state) == (
            ReleaseState.RESTORED,
            ReleaseState.RELEASED,
        )
        journal.close()
        grown.send_signal(signal.SIGTERM)
        grown.wait(timeout=10)
        deadline = time.monotonic() + 30
        while held(sim_dir).get("ollama", 0) != 4 * GIB and time.monotonic() < deadline:
            time.sleep(0.1)
        assert held(sim_dir).get("ollama") == 4 * GIB
    finally:
        for proc in (first, second, grown):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=20)
            for stream in (proc.stdout, proc.stderr) if proc is not None else ():
                if stream is not None:
                    stream.close()
