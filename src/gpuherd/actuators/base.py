"""The actuator interface. An actuator acts and reports what it did; it never decides whether
the release worked: the engine checks the GPU backend for that (never trust an exit code or a
200)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from gpuherd.gpu.base import GpuBackend


class ActuatorError(Exception):
    """The release or restore action itself failed (command exit code, refused signal...)."""


@dataclass(frozen=True, slots=True)
class ActContext:
    tenant: str
    pids: tuple[int, ...]  # the tenant's GPU processes, from attribution
    log_dir: Path  # where started processes write their output
    timeout: float = 60.0
    env: dict[str, str] = field(default_factory=dict)
    # pid -> start ticks, taken when the tenant's processes were last attributed: a process
    # whose start time differs now is a stranger that reused the pid, never to be signalled.
    # None: not known, the actuator reads them itself.
    identities: dict[int, int | None] | None = None
    backend: GpuBackend | None = None  # the GPUs, for methods that act on device memory
    state_dir: Path | None = None  # where methods keep what an operator may need by hand
    pod_ips: tuple[str, ...] = ()  # the tenant's pods on this node (Kubernetes): `{pod_ip}`


class Actuator(Protocol):
    kind: str

    def release(self, ctx: ActContext) -> dict[str, Any]:
        """Do the release; return what restore needs to undo it (stored in the journal)."""
        ...

    def restore(self, ctx: ActContext, detail: dict[str, Any]) -> dict[str, Any]:
        """Undo the release; return facts about the restored tenant (e.g. a new pid)."""
        ...
