"""The `checkpoint` method in the broker, on the simulated driver: the tenant's memory goes to
host RAM for the job and comes back to the same process (same pid, state kept)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from gpuherd.broker.daemon import Daemon
from gpuherd.broker.service import Broker
from gpuherd.gpu.sim import SimHost
from tests.broker.conftest import engine_for, run_until_idle, submit
from tests.conftest import GIB, HolderFactory, gpuherd_argv, wait_for


def test_a_job_runs_while_the_tenant_sits_in_host_ram_and_the_same_process_comes_back(
    sim_dir: Path, holder: HolderFactory, tmp_path: Path
) -> None:
    trainer = holder("--vram", "4GiB", "--name", "trainer")
    hold = gpuherd_argv("sim", "hold", "--sim-dir", str(sim_dir))
    job = [*hold, "--vram", "10GiB", "--for", "0.5s", "--name", "render"]
    text = f"""\
version: 1
gpus: [{{name: gpu0, index: 0}}]
tenants:
  trainer:
    gpu: gpu0
    vram: 4GiB
    priority: 10
    cooldown: 0s
    match: {{cmdline: "--name trainer"}}
    preempt: [{{checkpoint: {{lock_timeout: 5s}}}}]
jobs:
  render: {{gpu: gpu0, vram: 10GiB, priority: 50, timeout: 60s, command: {job!r}}}
"""
    state = tmp_path / "state"
    engine = engine_for(text, sim_dir, state)
    job_id = submit(engine, "render")
    views = Broker(Daemon(engine)).views

    def job_runs() -> bool:
        engine.step()
        return bool(engine.followed)

    wait_for(job_runs, timeout=30)
    (parked,) = [t for t in views.tenants() if t.name == "trainer"]
    assert (parked.state, parked.host_ram) == ("released", 4 * GIB)  # status shows it
    run_until_idle(engine, timeout=60)
    row = engine.journal.job(job_id)
    assert row is not None
    assert (row.state, row.reason) == ("succeeded", None), [
        (e.kind, e.message) for e in engine.journal.events()
    ]
    (release,) = engine.journal.releases()
    assert (release.method, release.state) == ("checkpoint", "restored")
    (suspended,) = release.detail["suspended"]
    assert suspended["pid"] == trainer.pid
    with SimHost(sim_dir) as host:
        (proc,) = [p for p in host.snapshot().processes if p.name == "trainer"]
    assert (proc.pid, proc.used_bytes) == (trainer.pid, 4 * GIB)  # the same process, back
    assert trainer.poll() is None
    engine.journal.close()


def test_with_move_a_tenant_comes_back_on_another_gpu_of_its_chip(
    tmp_path: Path, holder: HolderFactory
) -> None:
    """Its own GPU was taken while it sat in host RAM; the other card (same chip) has room."""
    twins = tmp_path / "twins"
    SimHost.init(twins, [("NVIDIA RTX A4000", 12 * GIB), ("NVIDIA RTX A4000", 12 * GIB)]).close()
    hold = gpuherd_argv("sim", "hold", "--sim-dir", str(twins))
    trainer = subprocess.Popen(
        [*hold, "--gpu", "0", "--vram", "4GiB", "--name", "trainer"],
        stdout=subprocess.PIPE,
        text=True,
    )
    intruder: subprocess.Popen[str] | None = None
    try:
        assert trainer.stdout is not None
        assert trainer.stdout.readline().startswith("holding")
        job = [*hold, "--vram", "10GiB", "--for", "0.3s", "--name", "render"]
        text = f"""\
version: 1
gpus: [{{name: gpu0, index: 0}}, {{name: gpu1, index: 1}}]
tenants:
  trainer:
    gpu: gpu0
    vram: 4GiB
    priority: 10
    cooldown: 0s
    match: {{cmdline: "--name trainer"}}
    preempt: [{{checkpoint: {{move: true}}}}]
jobs:
  render: {{gpu: gpu0, vram: 10GiB, priority: 50, timeout: 60s, command: {job!r}}}
"""
        engine = engine_for(text, twins, tmp_path / "state")
        job_id = submit(engine, "render")

        def job_runs() -> bool:
            engine.step()
            return bool(engine.followed)

        wait_for(job_runs, timeout=30)
        (followed,) = engine.followed.values()
        wait_for(lambda: engine._launcher.poll(followed.handle) is not None, timeout=30)
        # Before the restore, something outside the broker takes GPU 0.
        intruder = subprocess.Popen(
            [*hold, "--gpu", "0", "--vram", "10GiB", "--name", "intruder"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert intruder.stdout is not None
        assert intruder.stdout.readline().startswith("holding")
        run_until_idle(engine, timeout=60)
        row = engine.journal.job(job_id)
        assert row is not None
        assert row.state == "succeeded"
        (release,) = engine.journal.releases()
        assert release.state == "restored"
        with SimHost(twins) as host:
            (proc,) = [p for p in host.snapshot().processes if p.name == "trainer"]
        assert (proc.pid, proc.gpu_index, proc.used_bytes) == (trainer.pid, 1, 4 * GIB)
        engine.journal.close()
    finally:
        for started in (trainer, intruder):
            if started is not None:
                started.kill()
                started.wait(timeout=10)
                if started.stdout is not None:
                    started.stdout.close()
