"""The judgement record, and a view of a filesystem under a root directory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Severity = Literal["error", "warning", "info"]

# Where binaries named without a path are looked up (runtimes resolve them through PATH).
SEARCH_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


@dataclass(frozen=True, slots=True)
class Judgement:
    """One finding about a config file; `key` is the path of the setting it is about."""

    id: str
    severity: Severity
    message: str
    fix: str
    key: tuple[str | int, ...] = ()


@dataclass(frozen=True, slots=True)
class Root:
    """A filesystem seen from `path` as its `/` (the live system when path is `/`)."""

    path: Path = Path("/")

    def __truediv__(self, inner: str) -> Path:
        return self.path / inner.lstrip("/")

    def resolve(self, inner: str, *, max_links: int = 40) -> str | None:
        """Follow symlinks inside the root; the final path (as seen inside), None if missing."""
        current = "/" + inner.lstrip("/")
        for _ in range(max_links):
            outside = self / current
            if not outside.is_symlink():
                return current if outside.exists() else None
            target = os.readlink(outside)
            current = (
                target
                if target.startswith("/")
                else os.path.normpath(os.path.join(os.path.dirname(current), target))
            )
        return None

    def which(self, name: str, extra_dirs: tuple[str, ...] = ()) -> str | None:
        """Like `command -v`: an absolute name is checked as is, others searched on PATH."""
        # Existence goes through `resolve`: an absolute symlink must not escape the root.
        if "/" in name:
            return name if self.resolve(name) is not None else None
        for directory in (*extra_dirs, *SEARCH_PATH):
            candidate = f"{directory}/{name}"
            if self.resolve(candidate) is not None:
                return candidate
        return None

    def read_text(self, inner: str, limit: int = 1 << 20) -> str | None:
        final = self.resolve(inner)
        if final is None:
            return None
        try:
            with (self / final).open("rb") as handle:
                return handle.read(limit).decode(errors="replace")
        except OSError:
            return None
