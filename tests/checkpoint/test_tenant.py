"""A tenant's processes suspended and resumed together, never left half-released."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gpuherd.checkpoint import IllegalState, NotEnoughVram, ProcessState, Refused
from gpuherd.checkpoint.sim import SimEngine
from gpuherd.checkpoint.tenant import choose_gpu, load_records, resume_all, suspend_all
from gpuherd.gpu.sim import SimBackend
from tests.checkpoint.conftest import MappedFactory
from tests.conftest import GIB, HolderFactory


@pytest.fixture
def gpus(sim_dir: Path) -> Iterator[SimBackend]:
    backend = SimBackend(sim_dir)
    yield backend
    backend.close()


def used(gpus: SimBackend, gpu: int) -> int:
    dev = gpus.snapshot().device(gpu)
    assert dev is not None
    return dev.memory_used


def test_all_processes_of_a_tenant_go_and_come_back(
    gpus: SimBackend, holder: HolderFactory
) -> None:
    a = holder("--vram", "3GiB", "--gpu", "0")
    b = holder("--vram", "5GiB", "--gpu", "1")
    engine = SimEngine(gpus.host)
    records = suspend_all(engine, gpus, pids=[a.pid, b.pid])
    assert [r.bytes for r in records] == [3 * GIB, 5 * GIB]
    assert used(gpus, 0) == used(gpus, 1) == 0
    back = resume_all(engine, gpus, records=records)
    assert [r.pid for r in back] == [b.pid, a.pid]  # reverse order
    assert (used(gpus, 0), used(gpus, 1)) == (3 * GIB, 5 * GIB)


def test_a_refused_process_rolls_back_the_others(
    gpus: SimBackend, holder: HolderFactory, mapped: MappedFactory, tmp_path: Path
) -> None:
    nccl = tmp_path / "libnccl.so.2"
    nccl.write_bytes(b"\0" * 4096)
    fine = holder("--vram", "3GiB")
    trainer = mapped(vram=2 * GIB, maps=(nccl,))
    engine = SimEngine(gpus.host)
    with pytest.raises(Refused, match="loads NCCL"):
        suspend_all(engine, gpus, pids=[fine.pid, trainer.pid])
    assert engine.state(fine.pid) is ProcessState.RUNNING
    assert used(gpus, 0) == 5 * GIB


def test_resume_moves_to_a_same_chip_gpu_with_room(gpus: SimBackend, holder: HolderFactory) -> None:
    proc = holder("--vram", "6GiB", "--gpu", "0")
    engine = SimEngine(gpus.host)
    records = suspend_all(engine, gpus, pids=[proc.pid])
    holder("--vram", "14GiB", "--gpu", "0")
    with pytest.raises(NotEnoughVram):
        resume_all(engine, gpus, records=records)
    assert choose_gpu(gpus.snapshot(), records[0]) == 1
    back = resume_all(engine, gpus, records=records, allow_move=True)
    assert (back[0].gpu_index, back[0].moved_from) == (1, 0)
    assert used(gpus, 1) == 6 * GIB


def test_choose_gpu_never_picks_another_chip(gpus: SimBackend, holder: HolderFactory) -> None:
    proc = holder("--vram", "6GiB", "--gpu", "0")
    engine = SimEngine(gpus.host)
    records = suspend_all(engine, gpus, pids=[proc.pid])
    holder("--vram", "14GiB", "--gpu", "0")
    holder("--vram", "14GiB", "--gpu", "1")
    assert choose_gpu(gpus.snapshot(), records[0]) is None  # GPU 2 (an L4) has room, wrong chip
    resume_all(engine, gpus, records=[])  # nothing to do is fine


def test_records_survive_a_crash_between_suspend_and_journal(
    gpus: SimBackend, holder: HolderFactory, tmp_path: Path
) -> None:
    a = holder("--vram", "3GiB", "--gpu", "0")
    b = holder("--vram", "2GiB", "--gpu", "1")
    engine = SimEngine(gpus.host)
    state = tmp_path / "state"
    suspend_all(engine, gpus, pids=[a.pid, b.pid], state_dir=state)
    # The caller died before storing what suspend_all returned; a restart finds the records.
    found = load_records(state, [a.pid, b.pid])
    assert [r.pid for r in found] == [a.pid, b.pid]
    # A release replayed after the crash counts them as already suspended.
    again = suspend_all(engine, gpus, pids=[a.pid, b.pid], state_dir=state)
    assert [r.bytes for r in again] == [3 * GIB, 2 * GIB]
    resume_all(engine, gpus, records=found, state_dir=state)
    assert load_records(state, [a.pid, b.pid]) == []
    assert (used(gpus, 0), used(gpus, 1)) == (3 * GIB, 2 * GIB)
    # Without a record, a process checkpointed by someone else is not taken as ours.
    gpus.host.lock(a.pid)
    gpus.host.checkpoint(a.pid)
    with pytest.raises(IllegalState, match="is checkpointed"):
        suspend_all(engine, gpus, pids=[a.pid], state_dir=state)
    assert engine.state(a.pid) is ProcessState.CHECKPOINTED
