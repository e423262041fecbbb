"""Place tenants and jobs that name no GPU: first-fit decreasing on time-aware loads.

Each GPU keeps its peak demand per 30-minute slot of the week. Items are placed in order of
priority, then peak VRAM (largest first), on the first GPU where their peak fits every slot they
are active in, respecting a `node` pin, anti-affinity and each GPU's reserve. An always-active
item fits exactly when the GPU's largest slot load plus its peak fits, an O(1) test, so large
fleets stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gpuherd.plan.demand import Week, by_gpu, cached_windows
from gpuherd.spec.model import Config, GpuSpec, VramAmount

SLOT = 30  # minutes


@dataclass(frozen=True, slots=True)
class Placement:
    subject: str
    kind: str
    gpu: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class Item:
    name: str
    kind: str
    priority: int
    vram: VramAmount
    node: str | None
    active: list[int] | None  # slots; None = always, [] = on demand (no schedule)

    def peak_on(self, gpu: GpuSpec) -> int:
        return self.vram.resolve(gpu.memory) or 0


@dataclass
class _Bin:
    gpu: GpuSpec
    capacity: int
    load: list[int]
    peak: int
    members: set[str] = field(default_factory=set)

    def fits(self, item: Item, peak: int) -> bool:
        if item.active is None:
            return self.peak + peak <= self.capacity
        if not item.active:  # an on-demand job needs the room at some moment
            return min(self.load) + peak <= self.capacity
        return all(self.load[s] + peak <= self.capacity for s in item.active)

    def add(self, item: Item, peak: int) -> None:
        targets = range(len(self.load)) if item.active is None else item.active
        for s in targets:
            self.load[s] += peak
            self.peak = max(self.peak, self.load[s])
        self.members.add(item.name)


def _slots(week: Week, schedule: list[tuple[str, float]] | None, slots: int) -> list[int] | None:
    if schedule is None:
        return None
    found: set[int] = set()
    for start, end in cached_windows(week, tuple(schedule)):
        found.update(range(start // SLOT, min((end - 1) // SLOT + 1, slots)))
    return sorted(found)


def items_to_place(config: Config, week: Week, slots: int) -> list[Item]:
    items: list[Item] = []
    for name, t in config.tenants.items():
        if t.gpu is None:
            schedule = None if t.active is None else [(w.cron, w.for_) for w in t.active]
            items.append(
                Item(
                    name,
                    "tenant",
                    t.priority,
                    t.vram.peak_amount,
                    t.node,
                    _slots(week, schedule, slots),
                )
            )
    for job_name, j in config.jobs.items():
        if j.gpu is None:
            active = [] if j.schedule is None else _slots(week, [(j.schedule, j.timeout)], slots)
            items.append(Item(job_name, "job", j.priority, j.vram, j.node, active))
    biggest = max((g.memory or 0 for g in config.gpus or []), default=0)
    items.sort(key=lambda it: (-it.priority, -(it.vram.resolve(biggest) or 0), it.name))
    return items


def _partners(config: Config) -> dict[str, set[str]]:
    partners: dict[str, set[str]] = {}
    for name, t in config.tenants.items():
        for other in t.anti_affinity:
            partners.setdefault(name, set()).add(other)
            partners.setdefault(other, set()).add(name)
    return partners


def place(config: Config, week: Week, pinned_loads: dict[str, list[int]]) -> list[Placement]:
    """Assign unpinned tenants and jobs; `pinned_loads` are per-slot bytes already on each GPU."""
    slots = -(-week.minutes // SLOT)
    pinned = by_gpu(config)
    bins = []
    for g in config.gpus or []:
        if g.capacity is None:
            continue
        load = list(pinned_loads.get(g.name) or [0] * slots)
        bins.append(_Bin(g, g.capacity, load, max(load, default=0), set(pinned.get(g.name, []))))
    partners = _partners(config)
    items = items_to_place(config, week, slots)
    smallest = min((g.memory or 0 for g in config.gpus or [] if g.memory), default=0)
    sizes = [it.vram.resolve(smallest) or 0 for it in items]
    # suffix_min[i]: the smallest item still to come; a bin that cannot take even that is full.
    suffix_min = [0] * (len(items) + 1)
    suffix_min[-1] = 2**62
    for k in range(len(items) - 1, -1, -1):
        suffix_min[k] = min(sizes[k], suffix_min[k + 1])
    open_bins = bins
    placements: list[Placement] = []
    for k, item in enumerate(items):
        avoid = partners.get(item.name, set())
        peaks: dict[int | None, int] = {}
        target = None
        for b in open_bins:
            if item.node is not None and b.gpu.node != item.node:
                continue
            if avoid and avoid & b.members:
                continue
            if b.gpu.memory not in peaks:
                peaks[b.gpu.memory] = item.peak_on(b.gpu)
            if b.fits(item, peaks[b.gpu.memory]):
                target = b
                break
        if target is None:
            where = f" on node {item.node}" if item.node else ""
            placements.append(
                Placement(
                    item.name, item.kind, None, f"no GPU{where} has room for it at its active times"
                )
            )
            continue
        target.add(item, peaks[target.gpu.memory])
        left = (target.capacity - target.peak) / 1024**3
        placements.append(
            Placement(
                item.name,
                item.kind,
                target.gpu.name,
                f"first GPU with room at its active times; {left:.1f} GiB left at that GPU's peak",
            )
        )
        if target.capacity - min(target.load) < suffix_min[k + 1]:
            open_bins = [b for b in open_bins if b is not target]
    return placements


def slot_loads(segments: list[tuple[int, int, int]], slots: int) -> list[int]:
    """Per-slot peak bytes from (start minute, end minute, bytes) segments."""
    load = [0] * slots
    for start, end, nbytes in segments:
        for s in range(start // SLOT, min((end - 1) // SLOT + 1, slots)):
            load[s] = max(load[s], nbytes)
    return load
