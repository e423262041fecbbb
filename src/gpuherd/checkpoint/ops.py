"""Suspend and resume one process, safely: the library behind `gpuherd checkpoint` and the
broker's checkpoint release method.

suspend = safety checks, lock (with a timeout; the process stays running if it expires),
checkpoint, then verify on the GPU backend that the memory left. resume = check that the memory
fits (an out-of-memory restore poisons the process for good), optionally wait for room, restore,
unlock, verify it is back. Nothing here ever stops the target (SIGSTOP, cgroup freezer): the CUDA
restore thread inside it must run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from gpuherd.checkpoint.base import (
    CheckpointEngine,
    EngineFailed,
    IllegalState,
    NoCheckpointApi,
    NotCudaProcess,
    NotEnoughVram,
    ProcessState,
    Refused,
)
from gpuherd.checkpoint.records import Resumed, Suspended
from gpuherd.checkpoint.safety import (
    driver_notes,
    read_proc_facts,
    stopped_reason,
    suspend_refusals,
)
from gpuherd.gpu.base import GpuBackend, GpuSnapshot
from gpuherd.gpu.procinfo import start_ticks
from gpuherd.ids import GpuUuid

__all__ = ["DEFAULT_HOST_MARGIN", "DEFAULT_VRAM_MARGIN", "open_engine", "resume", "suspend"]

MIB = 1024**2
GIB = 1024**3
DEFAULT_VRAM_MARGIN = 256 * MIB  # the restored context needs a little beyond its allocations
DEFAULT_HOST_MARGIN = 1 * GIB  # leave the host room to breathe while it holds the copy


def open_engine(
    backend: Literal["nvml", "sim"], *, sim_dir: Path | None = None
) -> CheckpointEngine:
    """The engine for `backend`: sim -> the simulated driver; nvml -> cuda.bindings when it has
    the whole API, else the cuda-checkpoint binary; NoCheckpointApi when neither can work."""
    if backend == "sim":
        from gpuherd.checkpoint.sim import SimEngine
        from gpuherd.gpu.base import BackendUnavailable
        from gpuherd.gpu.sim import SimHost, default_sim_dir

        try:
            return SimEngine(SimHost(sim_dir or default_sim_dir()))
        except BackendUnavailable as exc:
            raise NoCheckpointApi(exc.message, exc.hint) from None
    from gpuherd.checkpoint.bindings import BindingsEngine
    from gpuherd.checkpoint.tool import ToolEngine

    try:
        return BindingsEngine()
    except NoCheckpointApi as first:
        try:
            return ToolEngine()
        except NoCheckpointApi as second:
            raise NoCheckpointApi(
                f"no CUDA checkpoint API here: {first.message}; {second.message}",
                f"{first.hint}; or run on simulated GPUs with --backend sim",
            ) from None


def persistence_mode(gpus: GpuBackend, index: int) -> bool | None:
    # Read through the NVML backend's one choke point, where there is one.
    nvml: Any = getattr(gpus, "nvml", None)
    if nvml is None:
        return None
    handle = nvml.query("nvmlDeviceGetHandleByIndex", index)
    mode = None if handle is None else nvml.query("nvmlDeviceGetPersistenceMode", handle)
    return None if mode is None else bool(mode)


def _host_available() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def _engine_state(engine: CheckpointEngine, pid: int) -> ProcessState | None:
    try:
        return engine.state(pid)
    except NotCudaProcess:
        return None


def suspend(
    engine: CheckpointEngine,
    gpus: GpuBackend,
    *,
    pid: int,
    lock_timeout: float = 10.0,
    host_margin: int = DEFAULT_HOST_MARGIN,
) -> Suspended:
    """Move `pid`'s device memory to host RAM; the process stays alive, its CUDA calls block.

    Raises Refused (a safety check said no; nothing was done), IllegalState (not running),
    LockTimeout (left running), NoCheckpointApi, EngineFailed.
    """
    facts = read_proc_facts(pid)
    before = gpus.snapshot()
    on_gpus = [p for p in before.processes if p.pid == pid]
    state = _engine_state(engine, pid) if facts.exists else None
    if state is not None and state != ProcessState.RUNNING:
        raise IllegalState(f"process {pid} is {state}; suspend needs it running", state)
    reasons = suspend_refusals(
        pid=pid,
        facts=facts,
        on_gpus=on_gpus,
        host_available=_host_available(),
        host_margin=host_margin,
    )
    if state is None and facts.exists and on_gpus:
        reasons.append(f"the {engine.name} engine knows no CUDA context in process {pid}")
    if reasons:
        raise Refused(pid, reasons)
    gpu = before.device(on_gpus[0].gpu_index)
    assert gpu is not None
    notes = driver_notes(
        engine=engine.name,
        driver_version=before.driver_version,
        persistence=persistence_mode(gpus, gpu.index),
        facts=facts,
    )
    ticks = start_ticks(pid)
    t0 = time.monotonic()
    engine.lock(pid, timeout=lock_timeout)
    t1 = time.monotonic()
    try:
        engine.checkpoint(pid)
    except Exception:
        _try_unlock(engine, pid)
        raise
    t2 = time.monotonic()
    after = gpus.snapshot()
    after_gpu = after.device(gpu.index)
    still = any(p.pid == pid for p in after.processes)
    return Suspended(
        pid=pid,
        start_ticks=ticks,
        gpu_index=gpu.index,
        gpu_uuid=gpu.uuid,
        gpu_name=gpu.name,
        bytes=sum(p.used_bytes or 0 for p in on_gpus),
        engine=engine.name,
        suspended_at=time.time(),
        lock_s=t1 - t0,
        checkpoint_s=t2 - t1,
        freed_bytes=max(0, gpu.memory_used - (after_gpu.memory_used if after_gpu else 0)),
        verified=not still,
        notes=tuple(notes),
    )


def _try_unlock(engine: CheckpointEngine, pid: int) -> None:
    # A failed checkpoint leaves the process locked; give it back its GPU if we still can.
    try:
        if engine.state(pid) == ProcessState.LOCKED:
            engine.unlock(pid)
    except Exception:  # noqa: S110 - the original error is the one to report
        pass


def _remap(snap: GpuSnapshot, source: int, target: int) -> dict[GpuUuid, GpuUuid]:
    """Every visible GPU mapped (the driver wants them all): source and target swap."""
    uuids = {dev.index: dev.uuid for dev in snap.devices}
    mapping = {uuid: uuid for uuid in uuids.values()}
    mapping[uuids[source]] = uuids[target]
    mapping[uuids[target]] = uuids[source]
    return mapping


def _settled(engine: CheckpointEngine, pid: int, state: ProcessState) -> Resumed | None:
    """A resume with nothing to restore: already running, or restored but never unlocked
    (a crash between the two steps). None when the process is checkpointed."""
    if state == ProcessState.CHECKPOINTED:
        return None
    if state not in (ProcessState.RUNNING, ProcessState.LOCKED):
        failed = state == ProcessState.FAILED
        raise IllegalState(
            f"process {pid} is {state}; only a checkpointed process can be resumed"
            + (
                " (a failed process cannot be recovered: only ending it frees it)" if failed else ""
            ),
            state,
        )
    t0 = time.monotonic()
    if state == ProcessState.LOCKED:
        engine.unlock(pid)
    return Resumed(
        pid=pid,
        gpu_index=-1,
        bytes=0,
        restore_s=0.0,
        unlock_s=time.monotonic() - t0,
        waited_s=0.0,
        moved_from=None,
        verified=True,
        already_running=state == ProcessState.RUNNING,
    )


def _checkpointed(engine: CheckpointEngine, pid: int, record: Suspended | None) -> tuple[int, int]:
    """(GPU index, bytes) the process was checkpointed with: gpuherd's record, else the engine."""
    if record is not None:
        return record.gpu_index, record.bytes
    held = engine.checkpointed_on(pid)
    if not held:
        raise Refused(
            pid,
            [
                "gpuherd has no record of how much memory it checkpointed (it was not suspended "
                "by gpuherd, or the record is gone), so it cannot check that the restore fits"
            ],
        )
    return next(iter(held.items()))


def _remap_for(
    engine: CheckpointEngine, snap: GpuSnapshot, pid: int, source: int, target: int
) -> dict[GpuUuid, GpuUuid] | None:
    src, dst = snap.device(source), snap.device(target)
    if dst is None:
        raise Refused(pid, [f"no GPU {target} here"])
    if target == source:
        return None
    if not engine.can_remap:
        raise NoCheckpointApi(
            f"the {engine.name} engine cannot restore onto another GPU",
            "install gpuherd[cuda] with cuda-bindings >= 13.0.2, or resume without --onto",
        )
    if src is None or src.name != dst.name:
        was = src.name if src else f"GPU {source}"
        raise Refused(
            pid,
            [
                f"GPU {target} ({dst.name}) is not the chip type process {pid} was "
                f"checkpointed on ({was})"
            ],
        )
    return _remap(snap, source, target)


def _wait_for_room(
    gpus: GpuBackend,
    snap: GpuSnapshot,
    *,
    pid: int,
    gpu: int,
    need: int,
    margin: int,
    wait: float,
    poll: float,
    sleep: Callable[[float], None],
) -> float:
    """Seconds waited until GPU `gpu` has `need + margin` free; NotEnoughVram at the deadline."""
    start = time.monotonic()
    deadline = start + max(0.0, wait)
    free = _free(snap, gpu)
    while free < need + margin:
        if time.monotonic() >= deadline:
            raise NotEnoughVram(pid=pid, gpu=gpu, need=need, free=free, margin=margin)
        sleep(min(poll, max(0.0, deadline - time.monotonic())))
        free = _free(gpus.snapshot(), gpu)
    return time.monotonic() - start


def _free(snap: GpuSnapshot, gpu: int) -> int:
    dev = snap.device(gpu)
    return 0 if dev is None else dev.memory_free


def resume(
    engine: CheckpointEngine,
    gpus: GpuBackend,
    *,
    pid: int,
    record: Suspended | None = None,
    wait: float = 0.0,
    onto: int | None = None,
    margin: int = DEFAULT_VRAM_MARGIN,
    poll: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Resumed:
    """Put `pid`'s memory back on the GPU (or on GPU `onto`) and let it run.

    Restores only when free VRAM >= the checkpointed bytes + `margin`, waiting up to `wait`
    seconds for that; otherwise raises NotEnoughVram and the process stays checkpointed. A
    process already running is left alone (`already_running`); a locked one is unlocked.
    Raises Refused, IllegalState (failed for good), NoCheckpointApi (no remapping), EngineFailed.
    """
    settled = _settled(engine, pid, engine.state(pid))
    if settled is not None:
        return settled
    source, need = _checkpointed(engine, pid, record)
    target = source if onto is None else onto
    snap = gpus.snapshot()
    remap = _remap_for(engine, snap, pid, source, target)
    if read_proc_facts(pid).stopped:
        raise Refused(pid, [stopped_reason(pid)])
    waited = _wait_for_room(
        gpus, snap, pid=pid, gpu=target, need=need, margin=margin, wait=wait, poll=poll, sleep=sleep
    )
    t0 = time.monotonic()
    engine.restore(pid, remap=remap)
    t1 = time.monotonic()
    engine.unlock(pid)
    t2 = time.monotonic()
    after = gpus.snapshot()
    back = any(p.pid == pid and p.gpu_index == target for p in after.processes)
    if not back and engine.state(pid) != ProcessState.RUNNING:
        raise EngineFailed(f"process {pid} did not come back running after the restore")
    return Resumed(
        pid=pid,
        gpu_index=target,
        bytes=need,
        restore_s=t1 - t0,
        unlock_s=t2 - t1,
        waited_s=waited,
        moved_from=source if target != source else None,
        verified=back,
    )
