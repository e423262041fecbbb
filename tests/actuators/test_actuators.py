"""Release and restore on the simulated GPU, with real processes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpuherd.actuators.base import ActContext, ActuatorError
from gpuherd.actuators.checkpoint import CheckpointActuator
from gpuherd.actuators.command import CommandActuator
from gpuherd.actuators.factory import actuator_for
from gpuherd.actuators.signal import SignalActuator
from gpuherd.gpu.procinfo import start_ticks
from gpuherd.gpu.sim import SimHost
from gpuherd.spec import parse_config
from tests.conftest import GIB, HolderFactory, gpuherd_argv, wait_for


def used(sim_dir: Path) -> int:
    with SimHost(sim_dir) as host:
        return host.snapshot().devices[0].memory_used


def test_signal_release_frees_and_start_restores(
    sim_dir: Path, holder: HolderFactory, tmp_path: Path
) -> None:
    whisper = holder("--vram", "3GiB", "--name", "whisper")
    start = gpuherd_argv(
        "sim", "hold", "--sim-dir", str(sim_dir), "--vram", "3GiB", "--name", "whisper"
    )
    act = SignalActuator("TERM", grace=5.0, start=start)
    ctx = ActContext(tenant="whisper", pids=(whisper.pid,), log_dir=tmp_path / "logs")
    detail = act.release(ctx)
    assert detail == {"signalled": [whisper.pid], "killed": [], "signal": "SIGTERM"}
    assert whisper.wait(timeout=5) == 0  # the holder stopped cleanly on TERM
    assert used(sim_dir) == 0
    restored = act.restore(ctx, detail)
    wait_for(lambda: used(sim_dir) == 3 * GIB)
    with SimHost(sim_dir) as host:
        assert [p.pid for p in host.snapshot().processes] == [restored["pid"]]
    assert Path(restored["log"]).read_text().startswith("holding 3.0 GiB")
    subprocess.run(["kill", str(restored["pid"])], check=True)


def test_a_process_ignoring_term_is_killed_after_grace(tmp_path: Path) -> None:
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ready', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert stubborn.stdout is not None
    assert stubborn.stdout.readline().strip() == "ready"
    started = time.monotonic()
    detail = SignalActuator("TERM", grace=0.5).release(
        ActContext(tenant="t", pids=(stubborn.pid,), log_dir=tmp_path)
    )
    assert detail["killed"] == [stubborn.pid]
    assert stubborn.wait(timeout=5) == -9
    assert time.monotonic() - started < 5


def test_a_pid_that_changed_hands_is_never_signalled(tmp_path: Path) -> None:
    """The tenant's process was attributed with one start time; the pid now belongs to a
    process that started at another (a stranger that reused it). Before, the method read the
    start time at signal time and killed the stranger."""
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ticks = start_ticks(stranger.pid)
        assert ticks is not None
        attributed: dict[int, int | None] = {stranger.pid: ticks - 1}  # its previous owner
        detail = SignalActuator("TERM", grace=0.5).release(
            ActContext(tenant="t", pids=(stranger.pid,), log_dir=tmp_path, identities=attributed)
        )
        assert detail["signalled"] == []
        time.sleep(0.3)
        assert stranger.poll() is None  # alive
        # A pid the keeper no longer attributes to the tenant is not a target either.
        detail = SignalActuator("TERM", grace=0.5).release(
            ActContext(tenant="t", pids=(stranger.pid,), log_dir=tmp_path, identities={})
        )
        assert detail["signalled"] == []
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait(timeout=10)


def test_signal_without_start_cannot_restore(tmp_path: Path) -> None:
    with pytest.raises(ActuatorError, match="no `start` command"):
        SignalActuator().restore(ActContext(tenant="t", pids=(), log_dir=tmp_path), {})


def test_command_actuator(tmp_path: Path) -> None:
    marker = tmp_path / "stopped"
    act = CommandActuator(
        [sys.executable, "-c", f"open({str(marker)!r}, 'w').write('x')"],
        [sys.executable, "-c", "import sys; print('boom', file=sys.stderr); sys.exit(3)"],
    )
    ctx = ActContext(tenant="t", pids=(), log_dir=tmp_path, timeout=10)
    assert act.release(ctx)["exit_code"] == 0
    assert marker.read_text() == "x"
    with pytest.raises(ActuatorError, match=r"restore command .* exited 3: boom"):
        act.restore(ctx, {})
    with pytest.raises(ActuatorError, match="release command not found: no-such-binary"):
        CommandActuator(["no-such-binary"], ["true"]).release(ctx)


def test_factory() -> None:
    config = parse_config(
        "version: 1\ntenants:\n  t:\n    vram: 1GiB\n    preempt:\n"
        "      - command: {release: [a], restore: [b]}\n      - signal: {signal: INT, grace: 2s}\n"
        "      - checkpoint: {}\n",
        source="t.yaml",
    )
    methods = config.tenants["t"].preempt  # type: ignore[index]
    assert isinstance(actuator_for(methods[0]), CommandActuator)
    assert isinstance(actuator_for(methods[1]), SignalActuator)
    assert isinstance(actuator_for(methods[2]), CheckpointActuator)
