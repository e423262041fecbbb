"""What a suspend leaves behind: one JSON record per suspended process, so `resume` knows how
many bytes must fit (the driver does not say) and `status` can show the host RAM they hold.

Records live in `<state>/checkpoints/<pid>.json`; a record whose process has gone (or whose pid
now belongs to another process: start times differ) is ignored and swept.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gpuherd.gpu.procinfo import start_ticks

__all__ = ["Resumed", "Suspended", "forget", "list_suspended", "load", "save"]


def _rate(nbytes: int, seconds: float) -> float | None:
    return nbytes / seconds / 1e9 if seconds > 0 else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Suspended:
    """A process whose device memory sits in host RAM; also what a broker journals."""

    pid: int
    start_ticks: int | None
    gpu_index: int
    gpu_uuid: str
    gpu_name: str
    bytes: int  # device memory moved to host RAM (NVML per-process usage before the lock)
    engine: str
    suspended_at: float  # Unix time
    lock_s: float
    checkpoint_s: float
    freed_bytes: int  # how much the GPU's used memory fell (verified on the backend)
    verified: bool  # the process no longer holds a context on the GPU
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def gbps(self) -> float | None:
        return _rate(self.bytes, self.checkpoint_s)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["notes"] = list(self.notes)
        data["gbps"] = self.gbps
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Suspended:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["notes"] = tuple(fields.get("notes", ()))
        return cls(**fields)


@dataclass(frozen=True, slots=True, kw_only=True)
class Resumed:
    pid: int
    gpu_index: int
    bytes: int
    restore_s: float
    unlock_s: float
    waited_s: float
    moved_from: int | None  # GPU index it was checkpointed on, when restored onto another
    verified: bool  # the process holds its memory on the GPU again
    already_running: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def gbps(self) -> float | None:
        return _rate(self.bytes, self.restore_s)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["notes"] = list(self.notes)
        data["gbps"] = self.gbps
        return data


def _dir(state_dir: Path) -> Path:
    return Path(state_dir) / "checkpoints"


def save(state_dir: Path, record: Suspended) -> Path:
    directory = _dir(state_dir)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / f"{record.pid}.json"
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record.to_json(), indent=2) + "\n")
    tmp.replace(path)  # a reader never sees half a record
    return path


def _current(record: Suspended) -> bool:
    ticks = start_ticks(record.pid)
    return ticks is not None and (record.start_ticks is None or ticks == record.start_ticks)


def load(state_dir: Path, pid: int) -> Suspended | None:
    """The record of `pid`'s suspend, if the same process still lives."""
    path = _dir(state_dir) / f"{pid}.json"
    try:
        record = Suspended.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if not _current(record):
        path.unlink(missing_ok=True)
        return None
    return record


def forget(state_dir: Path, pid: int) -> None:
    (_dir(state_dir) / f"{pid}.json").unlink(missing_ok=True)


def list_suspended(state_dir: Path) -> list[Suspended]:
    """Every live suspended process, oldest first; their `bytes` sit in host RAM."""
    directory = _dir(state_dir)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.glob("*.json"):
        record = load(state_dir, int(path.stem)) if path.stem.isdigit() else None
        if record is not None:
            found.append(record)
    return sorted(found, key=lambda r: r.suspended_at)
