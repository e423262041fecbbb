"""Hardware accounting: which config GPU is which device, what each tenant holds, and how much
room each GPU has once the memory promised to starting jobs is counted."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gpuherd.broker.journal import Journal
from gpuherd.broker.scheduler import GpuState, TenantState
from gpuherd.gpu.attribution import attribute
from gpuherd.gpu.base import GpuDevice, GpuSnapshot
from gpuherd.ids import GpuName, TenantName
from gpuherd.spec.model import Config, GpuSpec


@dataclass(frozen=True, slots=True)
class Held:
    bytes: int = 0
    pids: tuple[int, ...] = ()


NOTHING = Held()


def device_for(gpu: GpuSpec | None, snap: GpuSnapshot) -> GpuDevice | None:
    if gpu is None:
        return None
    for dev in snap.devices:
        if (gpu.uuid and dev.uuid == gpu.uuid) or (gpu.uuid is None and dev.index == gpu.index):
            return dev
    return None


def held_by_tenant(snap: GpuSnapshot, config: Config) -> dict[TenantName, Held]:
    held: dict[TenantName, Held] = {}
    for item in attribute(snap, config.tenants):
        if item.tenant is None:
            continue
        name = TenantName(item.tenant)
        before = held.get(name, NOTHING)
        held[name] = Held(
            before.bytes + (item.process.used_bytes or 0), (*before.pids, item.process.pid)
        )
    return held


def gpu_states(config: Config, snap: GpuSnapshot, promised: Callable[[str], int]) -> list[GpuState]:
    """Each configured GPU's room as the scheduler sees it: free minus the reserve, and what
    started jobs were promised but have not allocated yet."""
    states = []
    for gpu in config.gpus or []:
        dev = device_for(gpu, snap)
        if dev is not None:
            free = dev.memory_free - gpu.reserve
            states.append(GpuState(name=gpu.name, free=free, promised=promised(gpu.name)))
    return states


def tenant_states(
    config: Config, journal: Journal, held: dict[TenantName, Held]
) -> list[TenantState]:
    """Each tenant as the scheduler sees it: measured VRAM, released or not, cooldown, and
    what its last restore cost."""
    released = {r.tenant for r in journal.releases(open_only=True)}
    restored_at = journal.last_restored()
    costs = journal.restore_costs()
    return [
        TenantState(
            name=name,
            gpu=t.gpu or GpuName(""),
            priority=t.priority,
            preemptible=t.preemptible,
            held=held.get(name, NOTHING).bytes,
            max_downtime=t.max_downtime,
            state="released" if name in released else "running",
            cooldown_until=None if name not in restored_at else restored_at[name] + t.cooldown,
            restore_cost=costs.get(name, 0.0),
        )
        for name, t in config.tenants.items()
    ]
