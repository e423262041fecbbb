"""The pressure sampler on the simulated GPU: it wakes the engine when free memory crosses one of
the guard's lines, not when it moves on one side of them; with a poll of a minute, the guard
still releases within seconds of the pressure starting."""

from __future__ import annotations

import time
from pathlib import Path

from gpuherd.broker.daemon import Daemon
from gpuherd.broker.sampling import PressureSampler
from gpuherd.gpu.sim import SimBackend, SimHost
from tests.broker.test_guard_sim import engine_for, guard_config, held, transcode
from tests.conftest import GIB, HolderFactory
from tests.leaks import end


def test_a_crossing_wakes_the_engine_and_a_move_on_one_side_does_not(
    sim_dir: Path, holder: HolderFactory, tmp_path: Path
) -> None:
    holder("--vram", "1GiB", "--name", "plex")
    engine = engine_for(guard_config(sim_dir, "http://127.0.0.1:9"), sim_dir, tmp_path / "state")
    wakes: list[float] = []
    sampler = PressureSampler(
        SimBackend(sim_dir).memory_free,
        lambda: engine.guarding.watch,
        lambda: wakes.append(time.monotonic()),
        interval=0.01,
    )
    assert not sampler.sample()  # no step yet: nothing to watch
    engine.step()  # 11 GiB free; plex active with a 1 GiB headroom: the line is 2 GiB
    assert [w.seen for w in engine.guarding.watch.values()] == [11 * GIB]
    assert not sampler.sample()
    big = holder("--vram", "8GiB", "--name", "render")
    assert not sampler.sample()  # 3 GiB free: moved, still above the line
    small = holder("--vram", "2GiB", "--name", "more")
    assert sampler.sample()  # 1 GiB free: below the 2 GiB line
    assert not sampler.sample()  # once per step: the step it asked for is due
    engine.step()
    assert not sampler.sample()  # the step saw it: below, and still below
    small.kill()  # -9: its row stays in the simulated driver, but a dead process holds nothing
    small.wait(timeout=10)
    assert sampler.sample()  # 3 GiB free again: crossed back up
    big.terminate()
    big.wait(timeout=10)
    assert sampler.wakes == len(wakes) == 2


def test_with_a_one_minute_poll_the_sampler_lets_the_guard_act_within_seconds(
    sim_dir: Path, holder: HolderFactory, tmp_path: Path
) -> None:
    holder("--vram", "1GiB", "--name", "plex")
    holder("--vram", "3GiB", "--name", "whisper")
    text = guard_config(sim_dir, "http://127.0.0.1:9", poll="60s")
    engine = engine_for(text, sim_dir, tmp_path / "state")
    daemon = Daemon(engine, poll_interval=60.0, sample_interval=0.05)
    assert daemon.sampler is not None
    daemon.start()
    try:
        assert daemon.ready.wait(30)
        # Plex grows by 6.5 GiB (1.5 GiB free): whisper (idle, no utilization) must go, the moment `for` ends.
        grown = transcode(sim_dir, tmp_path, 13 * GIB // 2)
        start = time.monotonic()
        try:
            while held(sim_dir).get("whisper", 0) and time.monotonic() - start < 30:
                time.sleep(0.05)
            took = time.monotonic() - start
            assert held(sim_dir).get("whisper", 0) == 0
            assert took < 20  # `for` (0.5 s) + the release; the next poll was 60 s away
            assert daemon.sampler.wakes >= 1
        finally:
            grown.terminate()
            grown.wait(timeout=10)
            if grown.stdout is not None:
                grown.stdout.close()
    finally:
        daemon.stop()
        with SimHost(sim_dir) as host:  # a whisper the guard may have restored runs detached
            end([p.pid for p in host.snapshot().processes if p.name == "whisper"])
    assert daemon.sampler._thread is not None
    assert not daemon.sampler._thread.is_alive()


def test_no_guard_no_sampler(sim_dir: Path, tmp_path: Path) -> None:
    from gpuherd.broker.engine import Engine
    from gpuherd.broker.journal import Journal
    from gpuherd.spec.load import parse_config

    engine = Engine(
        config=parse_config("version: 1\ngpus: [{name: gpu0, index: 0}]\n", source="g.yaml"),
        backend=SimBackend(sim_dir),
        journal=Journal(tmp_path / "journal.db"),
        state_dir=tmp_path,
    )
    assert Daemon(engine, sample_interval=0.1).sampler is None
