"""The engine end to end on the sim GPU: release, run, restore; preflight first; replay."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from gpuherd.broker.states import JobState
from gpuherd.gpu.sim import SimHost
from gpuherd.ids import TenantName
from tests.broker.conftest import engine_for, run_until_idle, seed_config, submit
from tests.conftest import GIB, HolderFactory, wait_for


def used(sim_dir: Path) -> int:
    with SimHost(sim_dir) as host:
        return host.snapshot().devices[0].memory_used


def config_text(sim_dir: Path, ollama_url: str, extra_job: str = "") -> str:
    success = "    success: [{exit_code: 0}, {not_on_cpu: 30s}]\n"
    return seed_config(sim_dir, ollama_url, render_extra=success, extra_job=extra_job)


def test_render_releases_ollama_runs_and_restores(
    sim_dir: Path, holder: HolderFactory, ollama: str, tmp_path: Path
) -> None:
    holder("--vram", "2GiB", "--name", "plex")
    holder("--vram", "3GiB", "--name", "whisper")
    assert used(sim_dir) == 9 * GIB
    engine = engine_for(config_text(sim_dir, ollama), sim_dir, tmp_path / "state")
    job = submit(engine, "render")
    run_until_idle(engine, timeout=60)
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
    # The result record, in the journal and as JSON in the state dir.
    result = json.loads((tmp_path / "state" / "results" / f"{job}.json").read_text())
    assert result == engine.journal.job(job).result  # type: ignore[union-attr]
    assert result["outcome"] == "succeeded"
    assert result["peak_vram_bytes"] == 6 * GIB
    assert [(c["check"], c["ok"]) for c in result["checks"]] == [
        ("exit_code 0", True),
        ("not_on_cpu", True),
    ]
    (down,) = result["released"]
    assert (down["tenant"], down["method"], down["state"]) == ("ollama", "ollama", "restored")
    assert 1.5 <= down["down_s"] < 30
    assert 1.5 <= result["ran_s"] < 30


def test_a_job_not_on_the_gpu_is_stopped_early_and_tenants_return(
    sim_dir: Path, holder: HolderFactory, ollama: str, tmp_path: Path
) -> None:
    """Seed 000: the render fell back to llvmpipe and ran for hours. not_on_cpu stops it."""
    holder("--vram", "2GiB", "--name", "plex")
    holder("--vram", "3GiB", "--name", "whisper")
    cpu_job = f"""\
  cpu-render:
    gpu: gpu0
    vram: 6GiB
    priority: 50
    timeout: 10m
    grace: 2s
    command: ['{sys.executable}', '-c', 'import time; time.sleep(600)']
    success: [{{not_on_cpu: 1s}}]
"""
    engine = engine_for(config_text(sim_dir, ollama, cpu_job), sim_dir, tmp_path / "state")
    job = submit(engine, "cpu-render")
    started = time.monotonic()
    run_until_idle(engine, timeout=60)
    assert time.monotonic() - started < 20  # not the ten minutes of its timeout
    row = engine.journal.job(job)
    assert row is not None
    assert row.state == "failed"
    assert row.reason is not None
    assert row.reason.startswith("not on the GPU after 1s: stopped early")
    assert "no process of the job appeared on the GPU within 1s" in row.reason
    assert used(sim_dir) == 9 * GIB  # ollama came back
    assert [e.kind for e in engine.journal.events()].count("job_stopping") == 1


def test_a_job_past_its_timeout_is_stopped_and_fails(
    sim_dir: Path, holder: HolderFactory, ollama: str, tmp_path: Path
) -> None:
    slow = f"""\
  slow:
    gpu: gpu0
    vram: 1GiB
    timeout: 1s
    grace: 1s
    command: ['{sys.executable}', '-c', 'import time; time.sleep(600)']
"""
    engine = engine_for(config_text(sim_dir, ollama, slow), sim_dir, tmp_path / "state")
    job = submit(engine, "slow")
    run_until_idle(engine, timeout=30)
    row = engine.journal.job(job)
    assert row is not None
    assert row.state == "failed"
    assert row.reason is not None
    assert row.reason.startswith("timed out after 1s (timeout 1s); exit_code 0: exited -15")


def test_preflight_failure_touches_no_tenant(
    sim_dir: Path, holder: HolderFactory, ollama: str, tmp_path: Path
) -> None:
    holder("--vram", "3GiB", "--name", "whisper")
    text = config_text(sim_dir, ollama).replace(
        "    success: [", "    preflight: [{exists: factorio/bin/x64/factorio}]\n    success: ["
    )
    engine = engine_for(text, sim_dir, tmp_path / "state")
    job = submit(engine, "render")
    run_until_idle(engine, timeout=30)
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
    job = submit(engine, "render")
    # What a broker killed right after releasing whisper leaves behind:
    engine.journal.set_job_state(job, JobState.RELEASING)
    whisper_spec = engine.config.tenants[TenantName("whisper")]
    release = engine.journal.release_intent(job, "whisper", engine.keeper.plan_for(whisper_spec, 0))
    whisper.terminate()
    whisper.wait(timeout=10)
    engine.journal.mark_released(release, detail={"held": 3 * GIB})
    engine.journal.close()
    assert used(sim_dir) == 4 * GIB  # only ollama
    restarted = engine_for(config_text(sim_dir, ollama), sim_dir, state)
    restarted.replay()
    wait_for(lambda: used(sim_dir) == 7 * GIB)
    row = restarted.journal.job(job)
    assert row is not None
    # It never started: whisper comes back first, then the job waits its turn again.
    assert (row.state, row.reason) == (
        "queued",
        "requeued: the broker stopped before the job started",
    )
    assert restarted.journal.pending_restores() == []
    kinds = [e.kind for e in restarted.journal.events()]
    assert kinds[-4:] == ["job_restoring", "restore_started", "restored", "job_queued"]


def test_a_tenant_removed_from_the_config_is_restored_from_the_journal(
    sim_dir: Path, holder: HolderFactory, ollama: str, tmp_path: Path
) -> None:
    """Whisper was released when the broker died; the operator then removed it from the config.
    Before, replay raised KeyError at every start (a crash loop) and whisper stayed down. Now
    the restore runs from the method settings journaled with the release."""
    whisper = holder("--vram", "3GiB", "--name", "whisper")
    state = tmp_path / "state"
    text = config_text(sim_dir, ollama)
    engine = engine_for(text, sim_dir, state)
    job = submit(engine, "render")
    engine.journal.set_job_state(job, JobState.RELEASING)
    whisper_spec = engine.config.tenants[TenantName("whisper")]
    release = engine.journal.release_intent(job, "whisper", engine.keeper.plan_for(whisper_spec, 0))
    whisper.terminate()
    whisper.wait(timeout=10)
    engine.journal.mark_released(release, detail={"held": 3 * GIB})
    engine.journal.close()
    start = text.index("  whisper:\n")
    without_whisper = text[:start] + text[text.index("  ollama:\n") :]
    assert "whisper" not in without_whisper
    restarted = engine_for(without_whisper, sim_dir, state)
    restarted.replay()
    wait_for(lambda: used(sim_dir) == 7 * GIB)  # whisper holds its 3 GiB again
    assert restarted.journal.pending_restores() == []
    (restored,) = [e.message for e in restarted.journal.events() if e.kind == "restored"]
    assert restored == "restored via signal (no longer in the config; restored from the journal)"
