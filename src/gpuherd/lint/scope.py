"""Projects: the nearest directory with its own marker (kustomization, chart, Compose, Terraform).

Rules that judge one object by another (a RuntimeClass, a sharing config, ECS user data, a PV)
only take evidence from the same project: linting a monorepo or several folders at once must
not let one application's files judge another's. Files under no marker share one project ("").
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
        self._marked: dict[str, bool] = {}
        self._of: dict[str, str] = {}

    def _has_marker(self, directory: str) -> bool:
        if directory not in self._marked:
            names = set(self._given.get(directory, ()))
            if not directory.startswith("<"):
                with contextlib.suppress(OSError):  # gone or unreadable: no marker there
                    names |= set(os.listdir(directory or "."))
            self._marked[directory] = any(_is_marker(n) for n in names)
        return self._marked[directory]

    def of(self, source: str) -> str:
        if source not in self._of:
            found = ""
            if "/" in source:  # names without a directory (standard input, tests) share one
                for parent in PurePath(source).parents:
                    if self._has_marker(str(parent)):
                        found = str(parent)
                        break
            self._of[source] = found
        return self._of[source]

    def same(self, a: str, b: str) -> bool:
        return self.of(a) == self.of(b)
