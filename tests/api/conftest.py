"""The broker the in-process API tests talk to: a sim GPU, a slow-to-release tenant, jobs."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpuherd.broker.daemon import Daemon
from gpuherd.broker.engine import Engine
from gpuherd.broker.journal import Journal
from gpuherd.broker.service import Broker
from gpuherd.gpu.sim import SimBackend
from gpuherd.spec import parse_config
from tests.conftest import HolderFactory, gpuherd_argv


@pytest.fixture
def broker(sim_dir: Path, tmp_path: Path, holder: HolderFactory) -> Iterator[Broker]:
    hold = ", ".join(f"'{a}'" for a in gpuherd_argv("sim", "hold", "--sim-dir", str(sim_dir)))
    holder("--vram", "9GiB", "--name", "slowpoke")
    slow_release = [sys.executable, "-c", "import time; time.sleep(2)"]
    config = parse_config(
        f"""\
version: 1
gpus: [{{name: gpu0, index: 0}}]
tenants:
  slowpoke:
    gpu: gpu0
    vram: 9GiB
    match: {{cmdline: "--name slowpoke"}}
    release_timeout: 1s
    # Its release takes 2 s and frees nothing: a step stays busy for 3 s, then gives up.
    preempt: [{{command: {{release: {slow_release!r}, restore: [{sys.executable!r}, -c, '0']}}}}]
jobs:
  big: {{gpu: gpu0, vram: 6GiB, priority: 50, command: [{hold}, '--vram', '1GiB', '--for', '0.1s']}}
  quick: {{gpu: gpu0, vram: 2GiB, priority: 5, command: [{hold}, '--vram', '2GiB', '--for', '0.3s']}}
  slow: {{gpu: gpu0, vram: 2GiB, command: [{hold}, '--vram', '2GiB', '--for', '30s']}}
""",
        source="gpuherd.yaml",
    )
    engine = Engine(
        config=config,
        backend=SimBackend(sim_dir),
        journal=Journal(tmp_path / "journal.db"),
        state_dir=tmp_path,
        poll=0.05,
    )
    d = Daemon(engine, poll_interval=0.05)
    d.start()
    yield Broker(d)
    d.stop()
    engine.journal.close()
