"""Failed restores are retried with capped exponential backoff, never dropped; a restore waits
for room on the GPU instead of attempting a load that would OOM."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from gpuherd.broker.daemon import Daemon
from gpuherd.broker.engine import Engine
from gpuherd.broker.metrics import BrokerCollector
from gpuherd.broker.service import Broker
from gpuherd.broker.states import JobState
from gpuherd.ids import TenantName
from tests.broker.conftest import engine_for as engine_from_text
from tests.broker.conftest import submit
from tests.conftest import GIB, HolderFactory, gpuherd_argv, wait_for

# The tenant's start command: runs the real holder only once `flag` exists, and leaves a mark
# each time it is called, so a test can tell "tried and failed" from "never tried".
STARTER = """\
import os, sys
flag, marks = sys.argv[1], sys.argv[2]
with open(marks, "a") as f:
    f.write("x")
if not os.path.exists(flag):
    sys.exit(1)
os.execv(sys.argv[3], sys.argv[3:])
"""


def engine_for(sim_dir: Path, tmp_path: Path, health: str = "") -> Engine:
    script = tmp_path / "starter.py"
    script.write_text(STARTER)
    hold = gpuherd_argv("sim", "hold", "--sim-dir", str(sim_dir))
    start = [sys.executable, str(script), str(tmp_path / "flag"), str(tmp_path / "marks"), *hold]
    start += ["--vram", "3GiB", "--name", "whisper"]
    job = [*hold, "--vram", "8GiB", "--for", "0.3s", "--name", "render"]
    text = f"""\
version: 1
gpus: [{{name: gpu0, index: 0}}]
broker: {{restore_retry: 0.5s, restore_retry_max: 1s}}
tenants:
  plex: {{gpu: gpu0, vram: 2GiB, priority: 100, preemptible: false, match: {{cmdline: "--name plex"}}}}
  whisper:
    gpu: gpu0
    vram: 3GiB
    priority: 20
    cooldown: 0s
    restore_timeout: 3s{health}
    match: {{cmdline: "--name whisper"}}
    preempt: [{{signal: {{grace: 5s, start: {start!r}}}}}]
jobs:
  render: {{gpu: gpu0, vram: 8GiB, priority: 50, timeout: 60s, command: {job!r}}}
"""
    return engine_from_text(text, sim_dir, tmp_path / "state")


def step_until(engine: Engine, done: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, [(e.kind, e.message) for e in engine.journal.events()]
        engine.step()
        time.sleep(0.05)


def whisper_state(engine: Engine) -> str:
    return engine.journal.releases()[-1].state


def test_a_failed_restore_is_retried_with_backoff_until_it_works(
    sim_dir: Path, holder: HolderFactory, tmp_path: Path
) -> None:
    holder("--vram", "2GiB", "--name", "plex")
    holder("--vram", "3GiB", "--name", "whisper")
    engine = engine_for(sim_dir, tmp_path)
    job = submit(engine, "render")
    step_until(engine, lambda: engine.journal.releases() != [] and not engine.followed)
    step_until(engine, lambda: engine.journal.job(job).state == "succeeded")  # type: ignore[union-attr]
    assert whisper_state(engine) == "restore_failed"  # its start command failed
    step_until(engine, lambda: (tmp_path / "marks").read_text() == "xx")  # retried once more
    assert whisper_state(engine) == "restore_failed"
    (tmp_path / "flag").write_text("")  # the cause is fixed: the next retry works
    step_until(engine, lambda: whisper_state(engine) == "restored")
    (release,) = engine.journal.releases()
    assert release.attempts >= 3
    kinds = [e.kind for e in engine.journal.events() if e.tenant == "whisper"]
    assert kinds[-1] == "restored"
    assert kinds.count("restore_failed") == release.attempts - 1
    # The backoff: retries wait restore_retry, then double, capped at restore_retry_max.
    fails = [e.at for e in engine.journal.events() if e.kind == "restore_failed"]
    starts = [e.at for e in engine.journal.events() if e.kind == "restore_started"]
    assert starts[1] - fails[0] >= 0.5
    assert starts[2] - fails[1] >= 1.0
    metrics = CollectorRegistry()
    metrics.register(BrokerCollector(Broker(Daemon(engine)).views))
    text = generate_latest(metrics).decode()
    assert f"gpuherd_restore_failures_total {float(release.attempts - 1)}" in text
    assert 'gpuherd_tenant_state{state="running",tenant="whisper"} 1.0' in text


def test_a_restore_waits_for_room_instead_of_loading_into_an_oom(
    sim_dir: Path, holder: HolderFactory, tmp_path: Path
) -> None:
    holder("--vram", "2GiB", "--name", "plex")
    holder("--vram", "3GiB", "--name", "whisper")
    (tmp_path / "flag").write_text("")
    engine = engine_for(sim_dir, tmp_path)
    submit(engine, "render")
    step_until(engine, lambda: bool(engine.followed))
    (active,) = engine.followed.values()
    wait_for(lambda: engine._launcher.poll(active.handle) is not None, timeout=30)
    # Something outside the broker grabs the room before the restore: 8 of the 10 GiB free.
    intruder: subprocess.Popen[str] = holder("--vram", "8GiB", "--name", "intruder")
    step_until(engine, lambda: not engine.followed)
    assert whisper_state(engine) == "restore_failed"
    (failed,) = [e for e in engine.journal.events() if e.kind == "restore_failed"]
    assert "needs 3.0 GiB free on gpu0, 2.0 GiB free" in failed.message
    assert not (tmp_path / "marks").exists()  # the start command was never run into an OOM
    metrics = CollectorRegistry()
    metrics.register(BrokerCollector(Broker(Daemon(engine)).views))
    assert (
        'gpuherd_tenant_state{state="failed",tenant="whisper"} 1.0'
        in generate_latest(metrics).decode()
    )
    intruder.terminate()
    intruder.wait(timeout=10)
    step_until(engine, lambda: whisper_state(engine) == "restored")
    assert (tmp_path / "marks").read_text() == "x"


def test_a_restore_counts_only_once_the_health_check_passes(
    sim_dir: Path, holder: HolderFactory, tmp_path: Path
) -> None:
    holder("--vram", "2GiB", "--name", "plex")
    holder("--vram", "3GiB", "--name", "whisper")
    (tmp_path / "flag").write_text("")
    ready = tmp_path / "ready"
    check = [sys.executable, "-c", f"import os, sys; sys.exit(not os.path.exists({str(ready)!r}))"]
    engine = engine_for(sim_dir, tmp_path, health=f"\n    health: {{command: {check!r}}}")
    job = submit(engine, "render")
    step_until(engine, lambda: engine.journal.job(job).state == "succeeded")  # type: ignore[union-attr]
    # Its memory is back, but it does not answer yet: not restored.
    assert whisper_state(engine) == "restore_failed"
    failed = [e.message for e in engine.journal.events() if e.kind == "restore_failed"]
    assert failed[0].endswith("health check: " + sys.executable + " exited 1")
    stop_at = time.monotonic() + 1.6  # the retries at +0.5 s and +1 s find it unhealthy too
    step_until(engine, lambda: time.monotonic() > stop_at)
    assert whisper_state(engine) == "restore_failed"
    failed = [e.message for e in engine.journal.events() if e.kind == "restore_failed"]
    assert len(failed) >= 2
    assert all("health check: " in m for m in failed)
    ready.write_text("")
    step_until(engine, lambda: whisper_state(engine) == "restored")
    assert (tmp_path / "marks").read_text() == "x"  # the memory check skipped a second start


SLOW_JOB = """\
import os, sys, time
time.sleep(2)  # a renderer loading its scene before it allocates
os.execv(sys.argv[1], sys.argv[1:])
"""


def test_a_restore_never_takes_the_room_promised_to_a_starting_job(
    sim_dir: Path, tmp_path: Path
) -> None:
    """Whisper (6 GiB) waits to be restored when an 8 GiB job is admitted on the 12 GiB GPU and
    has not allocated yet. Before, the restore saw 12 GiB free, took 6, and the job died of
    CUDA out of memory two seconds later."""
    script = tmp_path / "slow_job.py"
    script.write_text(SLOW_JOB)
    hold = gpuherd_argv("sim", "hold", "--sim-dir", str(sim_dir))
    start = [*hold, "--vram", "6GiB", "--name", "whisper"]
    job = [hold[0], str(script), *hold, "--vram", "8GiB", "--for", "1s", "--name", "render"]
    text = f"""\
version: 1
gpus: [{{name: gpu0, index: 0}}]
broker: {{restore_retry: 0.2s, restore_retry_max: 0.2s}}
tenants:
  whisper:
    gpu: gpu0
    vram: 6GiB
    priority: 20
    match: {{cmdline: "--name whisper"}}
    preempt: [{{signal: {{grace: 5s, start: {start!r}}}}}]
jobs:
  render: {{gpu: gpu0, vram: 8GiB, priority: 50, timeout: 60s, command: {job!r}}}
"""
    state = tmp_path / "state"
    engine = engine_from_text(text, sim_dir, state)
    # Whisper is down from an earlier job whose restore failed (its room was taken then).
    earlier = submit(engine, "render")
    engine.journal.set_job_state(earlier, JobState.RELEASING)
    spec = engine.config.tenants[TenantName("whisper")]
    release = engine.journal.release_intent(earlier, "whisper", engine.keeper.plan_for(spec, 0))
    engine.journal.mark_released(release, detail={"held": 6 * GIB})
    engine.journal.restore_intent(release)
    engine.journal.mark_restore_failed(release, "needs 6.0 GiB free on gpu0, 2.0 GiB free")
    engine.journal.set_job_state(earlier, JobState.FAILED, reason="test set-up")
    job_id = submit(engine, "render")
    step_until(engine, lambda: engine.journal.job(job_id).state.final, timeout=60)  # type: ignore[union-attr]
    row = engine.journal.job(job_id)
    assert row is not None
    assert (row.state, row.reason) == ("succeeded", None)
    failed = [e.message for e in engine.journal.events() if e.kind == "restore_failed"]
    assert any("needs 6.0 GiB free on gpu0, 4.0 GiB free" in m for m in failed)
    step_until(engine, lambda: whisper_state(engine) == "restored", timeout=30)
    engine.journal.close()
