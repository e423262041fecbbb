"""Captured host trees (tests/setup/trees) copied into a scratch directory per test."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

TREES = Path(__file__).parent / "trees"
EXPECTED = Path(__file__).parent / "expected"
# Where setup keeps its run records; left out when a tree is compared with its original.
RECORDS = "var/lib/gpuherd"

Snapshot = dict[str, tuple[str, bytes | str, int]]


def snapshot(root: Path) -> Snapshot:
    """Every file and link under root: kind, bytes or link target, and mode."""
    found: Snapshot = {}
    for directory, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            path = Path(directory) / name
            rel = str(path.relative_to(root))
            if rel == RECORDS or rel.startswith(RECORDS + "/"):
                continue
            info = path.lstat()
            if path.is_symlink():
                found[rel] = ("link", os.readlink(path), 0)
            elif path.is_file():
                found[rel] = ("file", path.read_bytes(), info.st_mode & 0o7777)
    return found


@pytest.fixture
def tree(tmp_path: Path) -> Callable[[str], Path]:
    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(TREES / name, target, symlinks=True)
        return target

    return copy
