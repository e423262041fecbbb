"""Hardware accounting: which config GPU is which device, what each tenant holds, and how much
room each GPU has once the memory promised to starting jobs is counted."""

from __future__ import annotations

from dataclasses import dataclass

from gpuherd.gpu.attribution import attribute
from gpuherd.gpu.base import GpuDevice, GpuSnapshot
from gpuherd.ids import TenantName
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
