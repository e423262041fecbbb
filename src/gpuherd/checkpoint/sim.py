"""The checkpoint engine over the simulated driver (`gpuherd.gpu.sim`): same states, same
failures, so every checkpoint path runs without a GPU. Remapping works between simulated GPUs of
the same chip type, as the driver's gpuPairs do."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from gpuherd.checkpoint.base import (
    EngineFailed,
    IllegalState,
    NotCudaProcess,
    ProcessState,
)
from gpuherd.gpu.sim import SimError, SimHost, SimIllegalState, SimNoSuchProcess, SimOutOfMemory
from gpuherd.ids import GpuUuid

__all__ = ["SimEngine"]


class SimEngine:
    name = "sim"
    can_remap = True

    def __init__(self, host: SimHost) -> None:
        self.host = host

    @contextmanager
    def _mapped(self) -> Iterator[None]:
        try:
            yield
        except SimNoSuchProcess as exc:
            raise NotCudaProcess(str(exc)) from None
        except SimIllegalState as exc:
            raise IllegalState(str(exc)) from None
        except SimOutOfMemory as exc:
            raise EngineFailed(str(exc)) from None
        except SimError as exc:
            raise EngineFailed(str(exc)) from None

    def state(self, pid: int) -> ProcessState:
        with self._mapped():
            return ProcessState(self.host.state_of(pid))

    def lock(self, pid: int, *, timeout: float) -> None:
        # A simulated process never sits in a long kernel, so the lock takes at once.
        with self._mapped():
            self.host.lock(pid)

    def checkpoint(self, pid: int) -> None:
        with self._mapped():
            self.host.checkpoint(pid)

    def restore(self, pid: int, *, remap: Mapping[GpuUuid, GpuUuid] | None = None) -> None:
        onto: dict[int, int] = {}
        if remap:
            index = {dev.uuid: dev.index for dev in self.host.snapshot().devices}
            for old, new in remap.items():
                if old not in index or new not in index:
                    raise EngineFailed(
                        f"no simulated GPU with UUID {old if old not in index else new}"
                    )
                onto[index[old]] = index[new]
        with self._mapped():
            self.host.restore(pid, onto=onto)

    def unlock(self, pid: int) -> None:
        with self._mapped():
            self.host.unlock(pid)

    def checkpointed_on(self, pid: int) -> dict[int, int] | None:
        return self.host.checkpointed_bytes(pid) or None
