"""`checkpoint`: move the tenant's GPU memory to host RAM (its processes stay alive, their CUDA
calls block) and back, in place: the tenant keeps its pid and its state.

Suspends are recorded in `STATE/checkpoints/`, the same place `gpuherd checkpoint` uses, so an
operator can see and resume a broker-suspended process by hand.
"""

from __future__ import annotations

from typing import Any

from gpuherd.actuators.base import ActContext, ActuatorError
from gpuherd.checkpoint import CheckpointEngine, CheckpointError, Suspended, open_engine
from gpuherd.checkpoint.tenant import resume_all, suspend_all
from gpuherd.gpu.base import GpuBackend


def _engine(backend: GpuBackend) -> CheckpointEngine:
    if backend.name == "sim":
        host = getattr(backend, "host", None)
        return open_engine("sim", sim_dir=getattr(host, "directory", None))
    return open_engine("nvml")


class CheckpointActuator:
    kind = "checkpoint"

    def __init__(self, lock_timeout: float = 10.0, *, move: bool = False) -> None:
        self._lock_timeout = lock_timeout
        self.move = move  # may come back on another GPU of the same chip

    def _gpus(self, ctx: ActContext) -> GpuBackend:
        if ctx.backend is None:
            raise ActuatorError("the checkpoint method needs the broker's GPU backend")
        return ctx.backend

    def release(self, ctx: ActContext) -> dict[str, Any]:
        gpus = self._gpus(ctx)
        try:
            records = suspend_all(
                _engine(gpus),
                gpus,
                pids=ctx.pids,
                lock_timeout=self._lock_timeout,
                state_dir=ctx.state_dir,
            )
        except CheckpointError as exc:  # nothing stays suspended: suspend_all rolled back
            raise ActuatorError(f"{ctx.tenant}: {exc}") from None
        return {"suspended": [r.to_json() for r in records]}

    def restore(self, ctx: ActContext, detail: dict[str, Any]) -> dict[str, Any]:
        gpus = self._gpus(ctx)
        records = [Suspended.from_json(d) for d in detail.get("suspended", [])]
        try:
            resumed = resume_all(
                _engine(gpus), gpus, records=records, allow_move=self.move, state_dir=ctx.state_dir
            )
        except CheckpointError as exc:  # still checkpointed, never poisoned: retried later
            raise ActuatorError(f"{ctx.tenant}: {exc}") from None
        moved = {r.pid: r.gpu_index for r in resumed if r.moved_from is not None}
        return {"resumed": [r.pid for r in resumed], "moved": moved}
