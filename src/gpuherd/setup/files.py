"""Writing config files safely: atomic replace, a timestamped backup beside each file, a manifest
of every run so `--undo` puts back exactly what was there, and the unified diff shown first."""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from gpuherd.runtimecfg.base import Root
from gpuherd.setup.model import Change

MANIFEST_DIR = "/var/lib/gpuherd/setup"
BACKUP_TAG = ".gpuherd-"


def unified_diff(change: Change) -> str:
    before = (change.before or b"").decode(errors="replace").splitlines(keepends=True)
    after = (change.after or b"").decode(errors="replace").splitlines(keepends=True)
    lines = difflib.unified_diff(
        before,
        after,
        fromfile="/dev/null" if change.before is None else change.path,
        tofile="/dev/null" if change.after is None else change.path,
    )
    # A last line without a newline would glue onto the next header; say so as diff(1) does.
    return "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
    )


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def atomic_write(path: Path, data: bytes, *, like: Path | None = None) -> None:
    """Write through a temporary file in the same directory and rename it over `path`: a reader
    (dockerd, containerd) sees the old or the new file, never half of one. Mode and owner follow
    `like` (the file being replaced) so a root-owned 0600 config stays that way."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if like is not None and like.exists():
            info = like.stat()
            os.chmod(tmp, info.st_mode & 0o7777)
            if os.geteuid() == 0:
                os.chown(tmp, info.st_uid, info.st_gid)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _backup_name(path: Path, stamp: str) -> Path:
    candidate = path.with_name(f"{path.name}{BACKUP_TAG}{stamp}")
    n = 1
    while candidate.exists():  # two runs in one second must not overwrite the first backup
        candidate = path.with_name(f"{path.name}{BACKUP_TAG}{stamp}.{n}")
        n += 1
    return candidate


class ChangedMeanwhile(Exception):
    """A file differs from what the plan was made from: writing would lose that change."""


@dataclass(frozen=True, slots=True)
class Applied:
    backups: dict[str, str | None]  # inner path -> inner backup path, None when created
    manifest: str


def apply_changes(root: Root, changes: list[Change], *, now: datetime | None = None) -> Applied:
    """Back up, then write each change; record the run in a manifest for `--undo`."""
    for change in changes:  # all or nothing: nobody may have written a file since we read it
        outside = root / change.path
        current = outside.read_bytes() if outside.exists() else None
        if current != change.before:
            raise ChangedMeanwhile(f"{change.path} changed while gpuherd was planning; run again")
    stamp = (now or datetime.now()).strftime("%Y%m%d%H%M%S")
    entries: list[dict[str, Any]] = []
    backup: Path | None = None
    try:
        for change in changes:
            outside = root / change.path
            created_dirs = _make_parents(root, outside.parent)
            backup = None
            if change.before is not None:
                backup = _backup_name(outside, stamp)
                _copy_exact(outside, backup)
            if change.after is None:
                outside.unlink()
            else:
                atomic_write(outside, change.after, like=outside)
            entries.append(
                {
                    "path": change.path,
                    "backup": None if backup is None else _inner(root, backup),
                    "sha256_after": None if change.after is None else _sha(change.after),
                    "created_dirs": created_dirs,
                }
            )
            backup = None
        manifest = _write_manifest(root, stamp, entries)
    except BaseException:
        # Half a setup is worse than none: put back what was written, then report the error.
        if backup is not None:
            backup.unlink(missing_ok=True)
        _put_back(root, entries)
        raise
    return Applied({e["path"]: e["backup"] for e in entries}, _inner(root, manifest))


def _write_manifest(root: Root, stamp: str, entries: list[dict[str, Any]]) -> Path:
    manifest_dir = root / MANIFEST_DIR
    manifest_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    while (manifest := manifest_dir / f"run-{stamp}-{n:03d}.json").exists():
        n += 1
    atomic_write(manifest, json.dumps({"changes": entries}, indent=2).encode() + b"\n")
    return manifest


def _put_back(root: Root, entries: list[dict[str, Any]]) -> None:
    for entry in reversed(entries):
        outside = root / entry["path"]
        if entry["backup"] is None:
            outside.unlink(missing_ok=True)
        else:
            # A rename keeps the original bytes, mode and owner exactly.
            os.replace(root / entry["backup"], outside)
        for directory in reversed(entry.get("created_dirs", [])):
            with contextlib.suppress(OSError):
                (root / directory).rmdir()


def _inner(root: Root, outside: Path) -> str:
    return "/" + str(outside.relative_to(root.path))


def _make_parents(root: Root, directory: Path) -> list[str]:
    missing: list[Path] = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for item in reversed(missing):
        item.mkdir(mode=0o755)
    return [_inner(root, d) for d in missing]


def _copy_exact(source: Path, target: Path) -> None:
    """The backup keeps the bytes and the mode; written atomically like everything else."""
    atomic_write(target, source.read_bytes(), like=source)


class UndoRefused(Exception):
    """A file was changed by someone else after gpuherd wrote it: putting the backup back would
    throw that change away."""


def newest_manifest(root: Root) -> Path | None:
    directory = root / MANIFEST_DIR
    runs = sorted(directory.glob("run-*.json")) if directory.is_dir() else []
    return runs[-1] if runs else None


def undo_last(root: Root) -> tuple[list[tuple[str, str | None]], str | None]:
    """Put back the files of the newest run: [(path, backup or None if it was created)]."""
    manifest = newest_manifest(root)
    if manifest is None:
        return [], None
    try:
        entries = json.loads(manifest.read_bytes())["changes"]
        paths = [(e["path"], e["backup"], e["sha256_after"]) for e in entries]
    except (ValueError, KeyError, TypeError) as exc:
        raise UndoRefused(f"{_inner(root, manifest)} is unreadable ({exc!r})") from None
    for entry in entries:  # check everything first: all or nothing
        outside = root / entry["path"]
        expected = entry["sha256_after"]
        current = _sha(outside.read_bytes()) if outside.exists() else None
        if current != expected:
            raise UndoRefused(
                f"{entry['path']} changed after gpuherd wrote it; undo would discard that change"
            )
        if entry["backup"] is not None and not (root / entry["backup"]).exists():
            raise UndoRefused(f"the backup {entry['backup']} of {entry['path']} is gone")
    _put_back(root, entries)
    restored = [(path, backup) for path, backup, _sha256 in reversed(paths)]
    inner = _inner(root, manifest)
    manifest.unlink()
    with contextlib.suppress(OSError):
        manifest.parent.rmdir()
    return restored, inner
