"""A simulated GPU host whose memory is held by real OS processes.

State lives in one SQLite file (WAL) in a directory, so any number of processes (holders, the
broker, `gpuherd gpus`) share it safely; allocations run in `BEGIN IMMEDIATE` transactions, so two
holders can never both take the last free bytes. A holder's memory counts only while its
process lives (pid plus start time, so a reused pid does not inherit it): a SIGKILLed holder
stops holding at the next read, as with the real driver. Holders also follow the
cuda-checkpoint state machine (running -> locked -> checkpointed -> locked -> running), and a
restore that finds too little free memory leaves the process `failed` for good, as the real
driver does. A restore may remap a GPU onto another of the same chip type (the driver's gpuPairs).
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gpuherd.gpu.base import BackendUnavailable, GpuDevice, GpuProcess, GpuSnapshot
from gpuherd.gpu.procinfo import read_cmdline, start_ticks
from gpuherd.ids import GpuUuid
from gpuherd.sqlitetx import immediate
from gpuherd.units import format_bytes

__all__ = [
    "CheckpointState",
    "SimBackend",
    "SimError",
    "SimHost",
    "SimIllegalState",
    "SimNoSuchProcess",
    "SimOutOfMemory",
    "default_sim_dir",
]

CheckpointState = Literal["running", "locked", "checkpointed", "failed"]
DB_NAME = "sim.db"
SIM_DRIVER_VERSION = "sim-1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    idx INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    total INTEGER NOT NULL,
    reserved INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS holders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pid INTEGER NOT NULL,
    start_ticks INTEGER NOT NULL,
    gpu INTEGER NOT NULL REFERENCES devices(idx),
    bytes INTEGER NOT NULL DEFAULT 0,
    ckpt_bytes INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'running',
    name TEXT,
    kind TEXT NOT NULL DEFAULT 'compute',
    util INTEGER NOT NULL DEFAULT 0,
    UNIQUE (pid, gpu)
);
"""


class SimError(Exception):
    """A simulated driver error; subclasses mirror the CUDA errors a real call would return."""


class SimOutOfMemory(SimError):
    pass


class SimIllegalState(SimError):
    pass


class SimNoSuchProcess(SimError):
    pass


def default_sim_dir() -> Path:
    """`$GPUHERD_SIM_DIR`, else `$XDG_STATE_HOME/gpuherd/sim` (~/.local/state/gpuherd/sim)."""
    env = os.environ.get("GPUHERD_SIM_DIR")
    if env:
        return Path(env)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "gpuherd" / "sim"


@dataclass(frozen=True, slots=True)
class _Holder:
    id: int
    pid: int
    start_ticks: int
    gpu: int
    bytes: int
    ckpt_bytes: int
    state: str
    name: str | None
    kind: str
    util: int


class SimHost:
    """Read and change the simulated host in `directory` (see `SimHost.init` to create one)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        db = self.directory / DB_NAME
        if not db.exists():
            raise BackendUnavailable(
                f"no simulated GPUs in {self.directory}",
                f"create them with: gpuherd sim init --sim-dir {self.directory} "
                '--gpu "NVIDIA GeForce RTX 3080 Ti:12GiB"',
            )
        # Readers in other threads (a server's handlers, the broker's workers) share this
        # connection; SQLite is built serialized and writes go through BEGIN IMMEDIATE.
        self._conn = sqlite3.connect(
            db, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA busy_timeout = 30000")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        # A process's command line is fixed for its lifetime (pid + start time): read it once.
        self._cmdlines: dict[tuple[int, int], tuple[str, ...] | None] = {}

    @classmethod
    def init(
        cls, directory: Path, devices: list[tuple[str, int]], *, force: bool = False
    ) -> SimHost:
        """Create the simulated devices (name, total bytes). Refuses to overwrite unless forced."""
        if not devices:
            raise SimError("give at least one --gpu NAME:SIZE")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        db = directory / DB_NAME
        if db.exists():
            if not force:
                raise SimError(f"{directory} already holds simulated GPUs; pass --force to replace")
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
        # Build in a temporary file and rename, so a reader never sees a half-made host.
        tmp = directory / f".{DB_NAME}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(_SCHEMA)
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO devices (idx, uuid, name, total) VALUES (?, ?, ?, ?)",
                [
                    (i, f"GPU-{uuid.uuid4()}", name, total)
                    for i, (name, total) in enumerate(devices)
                ],
            )
            conn.execute("COMMIT")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        for suffix in ("-wal", "-shm"):
            Path(f"{tmp}{suffix}").unlink(missing_ok=True)
        tmp.replace(db)
        return cls(directory)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> SimHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short exclusive write transaction: the single-writer rule, enforced by SQLite."""
        with immediate(self._conn) as conn:
            yield conn

    # --- reading -------------------------------------------------------------------------

    def _devices(self) -> list[tuple[int, str, str, int, int]]:
        rows = self._conn.execute(
            "SELECT idx, uuid, name, total, reserved FROM devices ORDER BY idx"
        )
        return list(rows)

    def _holders(self, where: str = "", args: tuple[object, ...] = ()) -> list[_Holder]:
        # `where` is always one of this module's constant clauses; values go through `args`.
        columns = "id, pid, start_ticks, gpu, bytes, ckpt_bytes, state, name, kind, util"
        sql = f"SELECT {columns} FROM holders {where} ORDER BY id"  # noqa: S608
        return [_Holder(*row) for row in self._conn.execute(sql, args)]

    @staticmethod
    def _alive(holders: list[_Holder]) -> list[_Holder]:
        """Holders whose process still lives; one /proc read per distinct pid."""
        live: dict[int, int | None] = {}
        result = []
        for h in holders:
            if h.pid not in live:
                live[h.pid] = start_ticks(h.pid)
            if live[h.pid] == h.start_ticks:
                result.append(h)
        return result

    def _used_on(self, gpu: int) -> int:
        return sum(h.bytes for h in self._alive(self._holders("WHERE gpu = ?", (gpu,))))

    def _device_row(self, gpu: int) -> tuple[int, str, str, int, int]:
        row = self._conn.execute(
            "SELECT idx, uuid, name, total, reserved FROM devices WHERE idx = ?", (gpu,)
        ).fetchone()
        if row is None:
            count = self._conn.execute("SELECT count(*) FROM devices").fetchone()[0]
            raise SimError(f"no simulated GPU {gpu} (this host has {count}: 0..{count - 1})")
        return (int(row[0]), str(row[1]), str(row[2]), int(row[3]), int(row[4]))

    def snapshot(self) -> GpuSnapshot:
        self._conn.execute("BEGIN")
        try:
            devices = self._devices()
            holders = self._alive(self._holders())
        finally:
            self._conn.execute("COMMIT")
        used: dict[int, int] = {}
        util: dict[int, int] = {}
        for h in holders:
            used[h.gpu] = used.get(h.gpu, 0) + h.bytes
            if h.state == "running":
                util[h.gpu] = util.get(h.gpu, 0) + h.util
        uuids = {idx: GpuUuid(dev_uuid) for idx, dev_uuid, _n, _t, _r in devices}
        snap_devices = tuple(
            GpuDevice(
                index=idx,
                uuid=uuids[idx],
                name=name,
                memory_total=total,
                memory_used=used.get(idx, 0),
                memory_free=max(0, total - reserved - used.get(idx, 0)),
                memory_reserved=reserved,
                utilization=min(100, util.get(idx, 0)),
                temperature=None,
            )
            for idx, _uuid, name, total, reserved in devices
        )
        cmdlines = {(h.pid, h.start_ticks): self._cmdline(h) for h in holders}
        self._cmdlines = cmdlines  # drops the entries of processes that have gone
        # Like NVML, a process appears while it has a context; a checkpointed one has none.
        processes = tuple(
            GpuProcess(
                gpu_index=h.gpu,
                gpu_uuid=uuids[h.gpu],
                pid=h.pid,
                used_bytes=h.bytes,
                kind="graphics" if h.kind == "graphics" else "compute",
                name=h.name,
                cmdline=cmdlines[h.pid, h.start_ticks],
                utilization=h.util if h.state == "running" else 0,
            )
            for h in holders
            if h.state != "checkpointed"
        )
        return GpuSnapshot(
            backend="sim",
            taken_at=time.time(),
            devices=snap_devices,
            processes=processes,
            driver_version=SIM_DRIVER_VERSION,
            cuda_version=None,
        )

    def memory_free(self) -> dict[int, int]:
        """Free bytes by device: one query for the devices and what each process holds on
        them, then one /proc read per process (a dead one holds nothing); no command lines."""
        rows = self._conn.execute(
            "SELECT d.idx, d.total - d.reserved, h.pid, h.start_ticks, SUM(h.bytes) "
            "FROM devices d LEFT JOIN holders h ON h.gpu = d.idx "
            "GROUP BY d.idx, h.pid, h.start_ticks"
        ).fetchall()
        free: dict[int, int] = {}
        live: dict[int, int | None] = {}
        for idx, room, pid, ticks, nbytes in rows:
            free.setdefault(idx, room)
            if pid is None:
                continue
            if pid not in live:
                live[pid] = start_ticks(pid)
            if live[pid] == ticks:
                free[idx] -= nbytes
        return {idx: max(0, n) for idx, n in free.items()}

    def _cmdline(self, holder: _Holder) -> tuple[str, ...] | None:
        key = (holder.pid, holder.start_ticks)
        if key not in self._cmdlines:
            self._cmdlines[key] = read_cmdline(holder.pid)
        return self._cmdlines[key]

    # --- allocating (called by the holder process itself) ----------------------------------

    def allocate(
        self, *, pid: int, gpu: int, nbytes: int, name: str | None = None, util: int = 0
    ) -> int:
        """Add `nbytes` to what `pid` holds on `gpu`; raise SimOutOfMemory if they are not free.

        Returns the total the process now holds there.
        """
        ticks = start_ticks(pid)
        if ticks is None:
            raise SimNoSuchProcess(f"no live process {pid}")
        with self._write() as conn:
            _idx, _uuid, dev_name, total, reserved = self._device_row(gpu)
            conn.execute(
                "DELETE FROM holders WHERE pid = ? AND gpu = ? AND start_ticks != ?",
                (pid, gpu, ticks),
            )
            mine = self._holders("WHERE pid = ? AND gpu = ?", (pid, gpu))
            if mine and mine[0].state != "running":
                raise SimIllegalState(f"process {pid} is {mine[0].state}; it cannot allocate")
            free = total - reserved - self._used_on(gpu)
            if nbytes > free:
                raise SimOutOfMemory(
                    f"CUDA out of memory: tried to allocate {format_bytes(nbytes)} on GPU {gpu} "
                    f"({dev_name}; {format_bytes(total)} total, {format_bytes(max(free, 0))} free)"
                )
            if mine:
                conn.execute(
                    "UPDATE holders SET bytes = bytes + ? WHERE id = ?", (nbytes, mine[0].id)
                )
                return mine[0].bytes + nbytes
            conn.execute(
                "INSERT INTO holders (pid, start_ticks, gpu, bytes, name, util) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (pid, ticks, gpu, nbytes, name, util),
            )
            return nbytes

    def set_util(self, *, pid: int, gpu: int, util: int) -> None:
        """What `pid` reports as its GPU utilization from now on (a server taking a request)."""
        with self._write() as conn:
            if not self._holders("WHERE pid = ? AND gpu = ?", (pid, gpu)):
                raise SimNoSuchProcess(f"process {pid} holds nothing on GPU {gpu}")
            conn.execute(
                "UPDATE holders SET util = ? WHERE pid = ? AND gpu = ?",
                (max(0, min(100, util)), pid, gpu),
            )

    def free(self, *, pid: int, gpu: int, nbytes: int) -> int:
        """Give back part of what `pid` holds on `gpu` (cudaFree); returns what it still holds."""
        with self._write() as conn:
            mine = self._holders("WHERE pid = ? AND gpu = ?", (pid, gpu))
            if not mine:
                raise SimNoSuchProcess(f"process {pid} holds nothing on GPU {gpu}")
            left = max(0, mine[0].bytes - nbytes)
            conn.execute("UPDATE holders SET bytes = ? WHERE id = ?", (left, mine[0].id))
            return left

    def forget(self, *, pid: int) -> None:
        """Forget everything `pid` holds (a clean exit); also sweeps rows of dead processes."""
        with self._write() as conn:
            conn.execute("DELETE FROM holders WHERE pid = ?", (pid,))
            rows = self._holders()
            alive = {h.id for h in self._alive(rows)}
            dead = [h.id for h in rows if h.id not in alive]
            conn.executemany("DELETE FROM holders WHERE id = ?", [(i,) for i in dead])

    def state_of(self, pid: int) -> CheckpointState:
        """cuda-checkpoint --get-state: running, locked, checkpointed or failed."""
        rows = self._alive(self._holders("WHERE pid = ?", (pid,)))
        if not rows:
            raise SimNoSuchProcess(f"process {pid} holds no simulated GPU context")
        state = rows[0].state
        assert state in ("running", "locked", "checkpointed", "failed")
        return state  # type: ignore[return-value]

    # --- cuda-checkpoint state machine -------------------------------------------------------

    def lock(self, pid: int) -> None:
        self._transition(pid, "running", "locked")

    def unlock(self, pid: int) -> None:
        self._transition(pid, "locked", "running")

    def checkpoint(self, pid: int) -> None:
        """LOCKED -> CHECKPOINTED: device memory moves to host; the GPU memory is freed."""
        with self._write() as conn:
            rows = self._require(pid, "locked", "checkpoint")
            for h in rows:
                conn.execute(
                    "UPDATE holders SET state = 'checkpointed', ckpt_bytes = bytes, bytes = 0 "
                    "WHERE id = ?",
                    (h.id,),
                )

    def checkpointed_bytes(self, pid: int) -> dict[int, int]:
        """What a checkpointed process will need back, per GPU index (empty if not checkpointed)."""
        rows = self._alive(self._holders("WHERE pid = ? AND state = 'checkpointed'", (pid,)))
        return {h.gpu: h.ckpt_bytes for h in rows}

    def restore(self, pid: int, *, onto: dict[int, int] | None = None) -> None:
        """CHECKPOINTED -> LOCKED, if every GPU it held has room; else FAILED for good.

        `onto` maps a GPU index it was checkpointed on to the one to restore onto, as the
        driver's GPU-UUID pairs do; the target must be the same chip (same name).
        """
        onto = onto or {}
        with self._write() as conn:
            rows = self._require(pid, "checkpointed", "restore")
            targets = {h.id: onto.get(h.gpu, h.gpu) for h in rows}
            for h in rows:
                if targets[h.id] != h.gpu:
                    self._check_remap(h.gpu, targets[h.id])
            short = []
            for h in rows:
                target = targets[h.id]
                _i, _u, _n, total, reserved = self._device_row(target)
                free = total - reserved - self._used_on(target)
                if h.ckpt_bytes > free:
                    short.append(
                        f"GPU {target} needs {format_bytes(h.ckpt_bytes)}, "
                        f"{format_bytes(max(free, 0))} free"
                    )
            if short:
                conn.executemany(
                    "UPDATE holders SET state = 'failed' WHERE id = ?", [(h.id,) for h in rows]
                )
            else:
                for h in rows:
                    conn.execute(
                        "UPDATE holders SET state = 'locked', bytes = ckpt_bytes, ckpt_bytes = 0, "
                        "gpu = ? WHERE id = ?",
                        (targets[h.id], h.id),
                    )
        if short:
            raise SimOutOfMemory(
                f"CUDA_ERROR_OUT_OF_MEMORY restoring process {pid} ({'; '.join(short)}); "
                "the process is now in the failed state and cannot be restored"
            )

    def _check_remap(self, source: int, target: int) -> None:
        # Like cuCheckpointProcessRestore with gpuPairs: only onto a GPU of the same chip type.
        _i, _u, source_name, _t, _r = self._device_row(source)
        _i, _u, target_name, _t, _r = self._device_row(target)
        if source_name != target_name:
            raise SimIllegalState(
                f"cannot restore GPU {source} ({source_name}) onto GPU {target} "
                f"({target_name}): the chip types differ"
            )

    def _require(self, pid: int, state: str, action: str) -> list[_Holder]:
        rows = self._alive(self._holders("WHERE pid = ?", (pid,)))
        if not rows:
            raise SimNoSuchProcess(f"process {pid} holds no simulated GPU context")
        if rows[0].state != state:
            raise SimIllegalState(
                f"cannot {action} process {pid}: it is {rows[0].state}, must be {state}"
            )
        return rows

    def _transition(self, pid: int, from_state: str, to_state: str) -> None:
        action = "lock" if to_state == "locked" else "unlock"
        with self._write() as conn:
            rows = self._require(pid, from_state, action)
            conn.executemany(
                "UPDATE holders SET state = ? WHERE id = ?", [(to_state, h.id) for h in rows]
            )


class SimBackend:
    """The `sim` backend: snapshots of a `SimHost` directory."""

    name = "sim"

    def __init__(self, directory: Path) -> None:
        self.host = SimHost(directory)

    def snapshot(self) -> GpuSnapshot:
        return self.host.snapshot()

    def memory_free(self) -> dict[int, int]:
        return self.host.memory_free()

    def close(self) -> None:
        self.host.close()
