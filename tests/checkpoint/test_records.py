"""Suspend records: what resume and status read; a gone or reused pid has none."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from gpuherd.checkpoint import restore_seconds
from gpuherd.checkpoint.records import Suspended, forget, list_suspended, load, save
from gpuherd.gpu.procinfo import start_ticks
from tests.conftest import GIB


def record(pid: int, ticks: int | None, nbytes: int = 4 * GIB) -> Suspended:
    return Suspended(
        pid=pid,
        start_ticks=ticks,
        gpu_index=0,
        gpu_uuid="GPU-00000000-0000-0000-0000-000000000000",
        gpu_name="NVIDIA A100-SXM4-40GB",
        bytes=nbytes,
        engine="sim",
        suspended_at=time.time(),
        lock_s=0.01,
        checkpoint_s=0.5,
        freed_bytes=nbytes,
        verified=True,
        notes=("a note",),
    )


def test_records_round_trip_and_vanish_with_their_process(tmp_path: Path) -> None:
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as live:
        try:
            mine = record(live.pid, start_ticks(live.pid))
            save(tmp_path, mine)
            assert load(tmp_path, live.pid) == mine
            assert list_suspended(tmp_path) == [mine]
            assert mine.gbps == 4 * GIB / 0.5 / 1e9
        finally:
            live.kill()
    assert load(tmp_path, live.pid) is None
    assert list_suspended(tmp_path) == []
    assert not (tmp_path / "checkpoints" / f"{live.pid}.json").exists()


def test_a_reused_pid_does_not_inherit_a_record(tmp_path: Path) -> None:
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as live:
        try:
            ticks = start_ticks(live.pid)
            assert ticks is not None
            save(tmp_path, record(live.pid, ticks + 1))  # another process once had this pid
            assert load(tmp_path, live.pid) is None
        finally:
            live.kill()


def test_forget_and_an_empty_state_dir(tmp_path: Path) -> None:
    assert list_suspended(tmp_path / "nothing") == []
    forget(tmp_path, 12345)  # nothing to forget is fine


def test_restore_estimate_is_5_gb_per_s_plus_a_second() -> None:
    assert restore_seconds(0) == 1.0
    assert restore_seconds(10 * 10**9) == 3.0
    assert restore_seconds(80 * 10**9) == 17.0  # an 80 GB GPU: about 15 s was seen on H100
