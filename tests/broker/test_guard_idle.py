"""Idleness as the guard reads it: per-process GPU utilization where the driver reports it (the
simulated GPU does), else the tenant's declared `idle` probe, run for real; never idle when
nobody can tell."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from gpuherd.broker.guarding import is_idle
from gpuherd.gpu.base import GpuProcess, GpuSnapshot
from gpuherd.gpu.sim import SimHost
from gpuherd.ids import GpuUuid
from gpuherd.spec.model import TenantSpec


def tenant(idle_exit: int | None) -> TenantSpec:
    probe = None
    if idle_exit is not None:
        probe = {"command": [sys.executable, "-c", f"raise SystemExit({idle_exit})"]}
    return TenantSpec.model_validate({"vram": "4GiB", "idle": probe})


def test_per_process_utilization_from_the_sim_decides(sim_dir: Path) -> None:
    with SimHost(sim_dir) as host:
        host.allocate(pid=os.getpid(), gpu=0, nbytes=1 << 30, name="ollama")
        snap = host.snapshot()
        assert is_idle(tenant(None), (os.getpid(),), snap)
        # A probe is not asked when the driver can tell: it would say busy, the GPU says idle.
        assert is_idle(tenant(1), (os.getpid(),), snap)
        host.set_util(pid=os.getpid(), gpu=0, util=35)  # a generation in flight
        assert not is_idle(tenant(0), (os.getpid(),), host.snapshot())
        host.forget(pid=os.getpid())


def test_without_per_process_utilization_the_idle_probe_decides() -> None:
    # What NVML gives where it has no process samples to offer (vGPU, MIG, old drivers).
    snap = GpuSnapshot(
        backend="nvml",
        taken_at=0.0,
        devices=(),
        processes=(
            GpuProcess(gpu_index=0, gpu_uuid=GpuUuid("GPU-1"), pid=4242, used_bytes=1 << 30),
        ),
    )
    assert is_idle(tenant(0), (4242,), snap)
    assert not is_idle(tenant(3), (4242,), snap)
    assert not is_idle(tenant(None), (4242,), snap)  # nobody can tell: never released as idle
