"""The daemon loop: a failing step is reported and retried with backoff, not in a hot loop."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from gpuherd.api.app import create_app
from gpuherd.broker.daemon import Daemon
from gpuherd.broker.engine import Engine
from gpuherd.broker.journal import Journal
from gpuherd.broker.service import Broker
from gpuherd.gpu.base import GpuSnapshot
from gpuherd.gpu.sim import SimBackend
from gpuherd.spec import parse_config
from tests.conftest import wait_for


class FlakyBackend:
    """The simulated GPU, with a driver that fails its reads while `broken` is set (as NVML
    does during a driver reload)."""

    name = "sim"

    def __init__(self, sim_dir: Path, error: Exception | None = None) -> None:
        self._sim = SimBackend(sim_dir)
        self.broken = True
        self.reads = 0
        self.error = error or RuntimeError("NVML_ERROR_GPU_IS_LOST")

    def snapshot(self) -> GpuSnapshot:
        self.reads += 1
        if self.broken:
            raise self.error
        return self._sim.snapshot()

    def memory_free(self) -> dict[int, int]:
        if self.broken:
            raise self.error
        return self._sim.memory_free()

    def close(self) -> None:
        self._sim.close()


def test_a_failing_step_backs_off_and_shows_in_status_and_metrics(
    sim_dir: Path, tmp_path: Path
) -> None:
    config = parse_config("version: 1\ngpus: [{name: gpu0, index: 0}]\n", source="g.yaml")
    backend = FlakyBackend(sim_dir)
    engine = Engine(
        config=config,
        backend=backend,
        journal=Journal(tmp_path / "journal.db"),
        state_dir=tmp_path,
    )
    daemon = Daemon(engine, poll_interval=0.05)
    client = TestClient(create_app(Broker(daemon)))
    daemon.start()
    try:
        time.sleep(1.6)
        # Without backoff: one read every 50 ms, about 30. With it: 0.1, 0.2, 0.4, 0.8 s apart.
        assert 2 <= backend.reads <= 6
        status = client.get("/v1/status").json()
        assert status["engine"]["ok"] is False
        assert status["engine"]["error"] == "RuntimeError: NVML_ERROR_GPU_IS_LOST"
        metrics = client.get("/metrics").text
        assert "gpuherd_engine_up 0.0" in metrics
        errors = [e for e in client.get("/v1/events").json() if e["kind"] == "engine_error"]
        assert errors[0]["message"].endswith("(retry in 0.1s)")
        backend.broken = False
        daemon.wake()  # a wake does not cut a backoff short; the next try comes in time
        wait_for(lambda: client.get("/v1/status").json()["engine"]["ok"], timeout=5)
        assert "gpuherd_engine_up 1.0" in client.get("/metrics").text
    finally:
        daemon.stop()
        engine.journal.close()


def test_a_fault_the_engine_cannot_contain_ends_it_a_full_disk_does_not(
    sim_dir: Path, tmp_path: Path
) -> None:
    config = parse_config("version: 1\ngpus: [{name: gpu0, index: 0}]\n", source="g.yaml")
    given_up: list[str] = []
    for error, gives_up in ((RuntimeError("a bug"), True), (OSError(28, "No space left"), False)):
        backend = FlakyBackend(sim_dir, error=error)
        engine = Engine(
            config=config,
            backend=backend,
            journal=Journal(tmp_path / f"{gives_up}.db"),
            state_dir=tmp_path,
        )
        daemon = Daemon(engine, poll_interval=0.001)  # backoff from 2 ms: the test is quick
        daemon.on_fatal = given_up.append
        daemon.start()
        try:
            # Past GIVE_UP_AFTER failures in a row: one kind has given up, the other not.
            wait_for(lambda d=daemon, b=backend: d.fatal is not None or b.reads > 14, timeout=60)  # type: ignore[misc]
            seen = backend.reads
        finally:
            daemon.stop()
            engine.journal.close()
        assert (daemon.fatal is not None) == gives_up, seen
    assert given_up == ["RuntimeError: a bug"]
