"""Projects: the nearest directory with its own marker (kustomization, chart, Compose, Terraform).

Rules that judge one object by another (a RuntimeClass, a sharing config, ECS user data, a PV)
only take evidence from the same project: linting a monorepo or several folders at once must
not let one application's files judge another's. The walk upward stops at the repository root
(a directory with `.git`); a file with no marker up to there is a project of its own directory.
Names without a directory (standard input) share one project ("").
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import PurePath

MARKERS = frozenset(
    {
        "kustomization.yaml",
        "kustomization.yml",
        "Kustomization",
        "Chart.yaml",
        "compose.yaml",
        "compose.yml",
        "docker-compose.yaml",
        "docker-compose.yml",
    }
)


def _is_marker(name: str) -> bool:
    return name in MARKERS or name.endswith(".tf")  # a directory of .tf files is a module


class Projects:
    """File name -> project directory, from the linted names and what is on disk beside them."""

    def __init__(self, sources: Iterable[str]) -> None:
        self._given: dict[str, set[str]] = {}
        for source in sources:
            path = PurePath(source)
            self._given.setdefault(str(path.parent), set()).add(path.name)
        self._names: dict[str, set[str]] = {}
        self._of: dict[str, str] = {}

    def _listing(self, directory: str) -> set[str]:
        if directory not in self._names:
            names = set(self._given.get(directory, ()))
            with contextlib.suppress(OSError):  # gone or unreadable: nothing more there
                names |= set(os.listdir(directory or "."))
            self._names[directory] = names
        return self._names[directory]

    def of(self, source: str) -> str:
        if source not in self._of:
            self._of[source] = self._find(source)
        return self._of[source]

    def _find(self, source: str) -> str:
        if "/" not in source:
            return ""
        for parent in PurePath(source).parents:
            names = self._listing(str(parent))
            if any(_is_marker(n) for n in names):
                return str(parent)
            if ".git" in names:
                break
        return str(PurePath(source).parent)

    def same(self, a: str, b: str) -> bool:
        return self.of(a) == self.of(b)
