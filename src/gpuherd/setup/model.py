"""What a setup run decides: file changes, commands to run, refusals, and the evidence for each."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Engine = Literal["docker", "containerd", "k3s", "rke2", "microk8s"]
ENGINES: tuple[Engine, ...] = ("docker", "containerd", "k3s", "rke2", "microk8s")


class SetupInputError(Exception):
    """A config file that cannot be read or parsed: nothing is changed (exit 2)."""

    def __init__(self, path: str, message: str, line: int | None = None, col: int | None = None):
        self.path = path
        self.line = line
        self.col = col
        self.message = message
        where = path if line is None else f"{path}:{line}:{col or 1}"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True, slots=True)
class Change:
    """One file to write (`after`) or remove (`after` None); `before` None: the file is new."""

    path: str  # as seen inside the root, e.g. /etc/docker/daemon.json
    before: bytes | None
    after: bytes | None
    why: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why setup will not change this engine, and what the operator should do instead."""

    reason: str
    fix: str


@dataclass
class Plan:
    """Everything one engine (or the toolkit) needs; empty `changes` and no refusal: wired."""

    target: str  # docker, containerd, k3s, rke2, microk8s, toolkit
    changes: list[Change] = field(default_factory=list)
    commands: list[list[str]] = field(default_factory=list)  # restarts and the like, argv form
    notes: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)  # why we believe it is already wired
    refusal: Refusal | None = None
    effective_config: list[str] | None = None  # the command that shows what the daemon uses

    @property
    def wired(self) -> bool:
        return not self.changes and self.refusal is None


Status = Literal["already-wired", "would-change", "changed", "refused", "undone", "nothing-to-undo"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of a run over all plans: what the CLI prints and turns into an exit code."""

    status: Status
    plans: tuple[Plan, ...]
    backups: dict[str, str | None]  # path -> backup path (None: the file was created)
    manifest: str | None = None
