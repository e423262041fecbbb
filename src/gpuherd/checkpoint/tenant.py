"""Suspend and resume every GPU process of one tenant: what a `checkpoint` release method does.

All or nothing: if one process cannot be suspended, the ones already suspended are resumed
before the error is raised, so a tenant is never left half-released. Resume goes in reverse
order and, where the engine can remap, may pick another GPU of the same chip that has room.
With a `state_dir`, each record is written the moment its process is suspended and removed when
it is resumed, so a caller that crashes in between still finds what to resume (`load_records`),
and a release repeated after a crash counts a process it already suspended as done.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from gpuherd.checkpoint import records as store
from gpuherd.checkpoint.base import CheckpointEngine, CheckpointError, IllegalState, ProcessState
from gpuherd.checkpoint.ops import DEFAULT_VRAM_MARGIN, resume, suspend
from gpuherd.checkpoint.records import Resumed, Suspended
from gpuherd.gpu.base import GpuBackend, GpuSnapshot

__all__ = ["choose_gpu", "load_records", "resume_all", "suspend_all"]


def _suspend_one(
    engine: CheckpointEngine,
    gpus: GpuBackend,
    pid: int,
    lock_timeout: float,
    state_dir: Path | None,
) -> Suspended:
    try:
        record = suspend(engine, gpus, pid=pid, lock_timeout=lock_timeout)
    except IllegalState as exc:
        earlier = store.load(state_dir, pid) if state_dir is not None else None
        if exc.state == ProcessState.CHECKPOINTED and earlier is not None:
            return earlier  # suspended by a release that crashed before it could say so
        raise
    if state_dir is not None:
        store.save(state_dir, record)
    return record


def suspend_all(
    engine: CheckpointEngine,
    gpus: GpuBackend,
    *,
    pids: Sequence[int],
    lock_timeout: float = 10.0,
    state_dir: Path | None = None,
) -> list[Suspended]:
    """Suspend each pid in order; on the first failure resume those done, then re-raise."""
    done: list[Suspended] = []
    for pid in pids:
        try:
            done.append(_suspend_one(engine, gpus, pid, lock_timeout, state_dir))
        except CheckpointError:
            for record in reversed(done):
                # Best effort: the original error is the one the caller must see.
                try:
                    resume(engine, gpus, pid=record.pid, record=record)
                except CheckpointError:
                    continue
                if state_dir is not None:
                    store.forget(state_dir, record.pid)
            raise
    return done


def load_records(state_dir: Path, pids: Sequence[int]) -> list[Suspended]:
    """The records `suspend_all(state_dir=...)` wrote for these pids, in their order; pids
    without one (never suspended, already resumed, or gone) are left out."""
    found = (store.load(state_dir, pid) for pid in pids)
    return [record for record in found if record is not None]


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
    state_dir: Path | None = None,
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
        if state_dir is not None:
            store.forget(state_dir, record.pid)
    return out
