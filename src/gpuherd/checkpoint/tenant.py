"""Suspend and resume every GPU process of one tenant: what a `checkpoint` release method does.

All or nothing: if one process cannot be suspended, the ones already suspended are resumed
before the error is raised, so a tenant is never left half-released. Resume goes in reverse
order and, where the engine can remap, may pick another GPU of the same chip that has room.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from gpuherd.checkpoint.base import CheckpointEngine, CheckpointError
from gpuherd.checkpoint.ops import DEFAULT_VRAM_MARGIN, resume, suspend
from gpuherd.checkpoint.records import Resumed, Suspended
from gpuherd.gpu.base import GpuBackend, GpuSnapshot

__all__ = ["choose_gpu", "resume_all", "suspend_all"]


def suspend_all(
    engine: CheckpointEngine,
    gpus: GpuBackend,
    *,
    pids: Sequence[int],
    lock_timeout: float = 10.0,
) -> list[Suspended]:
    """Suspend each pid in order; on the first failure resume those done, then re-raise."""
    done: list[Suspended] = []
    for pid in pids:
        try:
            done.append(suspend(engine, gpus, pid=pid, lock_timeout=lock_timeout))
        except CheckpointError:
            for record in reversed(done):
                # Best effort: the original error is the one the caller must see.
                try:
                    resume(engine, gpus, pid=record.pid, record=record)
                except CheckpointError:
                    continue
            raise
    return done


def choose_gpu(
    snap: GpuSnapshot, record: Suspended, *, margin: int = DEFAULT_VRAM_MARGIN
) -> int | None:
    """Where `record` fits now: its own GPU if it has room, else the same-chip GPU with the most
    free memory that has room; None when none does."""
    need = record.bytes + margin
    own = snap.device(record.gpu_index)
    if own is not None and own.memory_free >= need:
        return own.index
    fits = [
        dev
        for dev in snap.devices
        if dev.name == record.gpu_name and dev.index != record.gpu_index and dev.memory_free >= need
    ]
    return max(fits, key=lambda dev: dev.memory_free).index if fits else None


def resume_all(
    engine: CheckpointEngine,
    gpus: GpuBackend,
    *,
    records: Sequence[Suspended],
    wait: float = 0.0,
    allow_move: bool = False,
    poll: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Resumed]:
    """Resume in reverse order of suspension. With `allow_move` and an engine that can remap, a
    process whose GPU lacks room goes to another GPU of the same chip that has it. Raises the
    first failure (NotEnoughVram leaves that process and the ones after it checkpointed)."""
    out = []
    for record in reversed(records):
        onto = None
        if allow_move and engine.can_remap:
            picked = choose_gpu(gpus.snapshot(), record)
            onto = picked if picked is not None and picked != record.gpu_index else None
        out.append(
            resume(
                engine,
                gpus,
                pid=record.pid,
                record=record,
                wait=wait,
                onto=onto,
                poll=poll,
                sleep=sleep,
            )
        )
    return out
