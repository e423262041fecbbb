"""The keeper's claim on a GPU (in the Kubernetes mode a Lease per GPU): held before the first
tenant on it is released, the intent journaled under it, let go once the last tenant is back,
and a release refused, with nothing touched, when the claim cannot be had."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gpuherd.broker.engine import Engine
from gpuherd.broker.states import JobState
from gpuherd.ids import GpuName
from tests.broker.conftest import engine_for, run_until_idle, submit
from tests.conftest import GIB, HolderFactory, gpuherd_argv
from tests.leaks import end


@dataclass
class Claim:
    """A GPU claim that says what it was asked and when (what the journal held then)."""

    engine: Engine | None = None
    refuse: str | None = None
    holds: list[tuple[GpuName | None, int]] = field(default_factory=list)  # (gpu, open releases)
    settled: list[set[GpuName | None]] = field(default_factory=list)

    def hold(self, gpu: GpuName | None) -> str | None:
        assert self.engine is not None
        self.holds.append((gpu, len(self.engine.journal.releases(open_only=True))))
        return self.refuse

    def settle(self, released: set[GpuName | None]) -> None:
        self.settled.append(set(released))


def _engine(sim_dir: Path, tmp_path: Path) -> Engine:
    hold = gpuherd_argv("sim", "hold", "--sim-dir", str(sim_dir))
    job = [*hold, "--vram", "8GiB", "--for", "0.3s", "--name", "render"]
    start = [*hold, "--vram", "6GiB", "--name", "whisper"]
    text = f"""\
version: 1
gpus: [{{name: gpu0, index: 0}}]
tenants:
  whisper:
    gpu: gpu0
    vram: 6GiB
    priority: 20
    cooldown: 0s
    match: {{cmdline: "--name whisper"}}
    preempt: [{{signal: {{grace: 5s, start: {start!r}}}}}]
jobs:
  render: {{gpu: gpu0, vram: 8GiB, priority: 50, timeout: 30s, command: {job!r}}}
"""
    return engine_for(text, sim_dir, tmp_path / "state")


def test_the_claim_is_held_before_the_intent_and_let_go_after_the_last_restore(
    sim_dir: Path, holder: HolderFactory, tmp_path: Path
) -> None:
    holder("--vram", "6GiB", "--name", "whisper")
    engine = _engine(sim_dir, tmp_path)
    claim = Claim(engine)
    engine.keeper.claim = claim
    job = submit(engine, "render")
    try:
        run_until_idle(engine)
        assert engine.journal.job(job).state is JobState.SUCCEEDED  # type: ignore[union-attr]
        assert claim.holds == [("gpu0", 0)]  # asked before its release was journaled
        [release] = engine.journal.releases()
        assert release.restored_at is not None
        assert claim.settled == [set()]  # whisper back: nothing released, the claim goes
    finally:
        for row in engine.journal.releases():
            started = row.detail.get("restore_started")
            if started:
                end([int(started["pid"])])


def test_a_release_the_claim_refuses_touches_nothing(
    sim_dir: Path, holder: HolderFactory, tmp_path: Path
) -> None:
    whisper = holder("--vram", "6GiB", "--name", "whisper")
    engine = _engine(sim_dir, tmp_path)
    engine.keeper.claim = Claim(engine, refuse="the lease of GPU GPU-1 is held by another")
    submit(engine, "render")
    for _ in range(5):
        engine.step()
    assert whisper.poll() is None  # still running, still holding its memory
    assert not engine.journal.releases()  # not even an intent
    refused = [e for e in engine.journal.events() if e.kind == "release_refused"]
    assert refused
    assert refused[0].message == "the lease of GPU GPU-1 is held by another"
    assert refused[0].tenant == "whisper"
    assert engine.backend.snapshot().devices[0].memory_used >= 6 * GIB
