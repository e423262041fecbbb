"""A wiped journal, accepted with --accept-journal-loss: what the host alone can tell comes back
(a tenant not running whose method can start it is restored, once), and every other doubt is an
event a person can act on; a tenant that runs is never started twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from gpuherd.broker.journal import Journal
from gpuherd.gpu.sim import SimHost
from tests.broker.test_guard_sim import held
from tests.conftest import GIB, HolderFactory, gpuherd_argv
from tests.leaks import end


def _config(sim_dir: Path, tag: str) -> str:
    """The broker scans the whole host: `tag` keeps other processes' names out of its way."""
    hold = ", ".join(f"'{a}'" for a in gpuherd_argv("sim", "hold", "--sim-dir", str(sim_dir)))
    return f"""\
version: 1
gpus: [{{name: gpu0, index: 0}}]
tenants:
  plex: {{gpu: gpu0, vram: 1GiB, preemptible: false, match: {{cmdline: "--name plex-{tag}"}}}}
  whisper:
    gpu: gpu0
    vram: 3GiB
    match: {{cmdline: "--name whisper-{tag}"}}
    preempt: [{{signal: {{start: [{hold}, '--vram', '3GiB', '--name', 'whisper-{tag}']}}}}]
  ollama:
    gpu: gpu0
    vram: 4GiB
    match: {{cmdline: "ollama-idle-{tag}"}}
    preempt: [{{signal: {{}}}}]
  tts:
    gpu: gpu0
    vram: 2GiB
    match: {{cmdline: "--name tts-{tag}"}}
    preempt: [{{signal: {{}}}}]
"""


def _serve(cfg: Path, sim_dir: Path, state: Path, *extra: str) -> subprocess.Popen[str]:
    argv = ["serve", "-c", str(cfg), "--backend", "sim", "--sim-dir", str(sim_dir)]
    argv += ["--state", str(state), "--socket", str(state.parent / "g.sock"), *extra]
    return subprocess.Popen(
        gpuherd_argv(*argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_after_an_accepted_loss_absent_tenants_come_back_and_doubts_are_events(
    sim_dir: Path, holder: HolderFactory, tmp_path: Path
) -> None:
    cfg = tmp_path / "gpuherd.yaml"
    tag = f"{os.getpid()}-{time.monotonic_ns()}"
    cfg.write_text(_config(sim_dir, tag))
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    holder("--vram", "1GiB", "--name", f"plex-{tag}")
    # Ollama's server runs with no model loaded: it may have been unloaded by a release.
    idle = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", f"ollama-idle-{tag}"]
    )
    first = _serve(cfg, sim_dir, state)
    try:
        assert first.stdout is not None
        assert json.loads(first.stdout.readline())["event"] == "listening"
        first.terminate()
        assert first.wait(timeout=30) == 0  # a clean stop writes the mark
        for path in state.glob("journal.db*"):
            path.unlink()  # the journal wiped, the mark left beside it: whisper's release lost

        refused = _serve(cfg, sim_dir, state)
        _out, err = refused.communicate(timeout=60)
        assert refused.returncode == 2, err
        assert "--accept-journal-loss" in err
        assert held(sim_dir) == {f"plex-{tag}": GIB}  # refusing touched nothing

        second = _serve(cfg, sim_dir, state, "--accept-journal-loss")
        try:
            assert second.stdout is not None
            assert json.loads(second.stdout.readline())["event"] == "listening"
            deadline = time.monotonic() + 30
            whisper, plex = f"whisper-{tag}", f"plex-{tag}"
            while held(sim_dir).get(whisper, 0) != 3 * GIB and time.monotonic() < deadline:
                time.sleep(0.1)
            assert held(sim_dir) == {plex: GIB, whisper: 3 * GIB}  # back once; plex untouched
        finally:
            second.terminate()
            second.wait(timeout=30)
            for stream in (second.stdout, second.stderr):
                if stream is not None:
                    stream.close()
    finally:
        with SimHost(sim_dir) as host:  # the restored whisper runs detached: end it here
            end([p.pid for p in host.snapshot().processes if p.name == f"whisper-{tag}"])
        idle.kill()
        idle.wait(timeout=10)
        for stream in (first.stdout, first.stderr):
            if stream is not None:
                stream.close()
    journal = Journal(state / "journal.db")
    try:
        events = [(e.kind, e.message) for e in journal.events()]
        (release,) = journal.releases()
    finally:
        journal.close()
    assert (release.tenant, release.job_id, release.state.value) == (
        "whisper",
        "journal-loss",
        "restored",
    )
    checks = [m for kind, m in events if kind == "journal_loss_check"]
    assert any(m.startswith("ollama runs but holds no GPU memory") for m in checks), checks
    assert any(m.startswith("tts is not running and none of its methods") for m in checks), checks
    assert not any("plex" in m or "whisper" in m for m in checks)
    assert ("journal_loss_restore", "not running after the journal loss: whisper") in events
