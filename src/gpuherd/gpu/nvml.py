"""The `nvml` backend: real NVIDIA GPUs through nvidia-ml-py (module `pynvml`).

Every NVML call goes through `Nvml.query`: it initialises lazily, turns any NVML error into None
("unavailable here": not supported, no permission, MIG, lost GPU) and decodes bytes, so the
snapshot code reads as a list of facts with no error handling of its own. Only initialisation
failures raise, as `BackendUnavailable` with the hint that fixes the machine.
"""

from __future__ import annotations

import time
from typing import Any

from gpuherd.gpu.base import (
    BackendUnavailable,
    GpuDevice,
    GpuProcess,
    GpuSnapshot,
    ProcessKind,
)
from gpuherd.gpu.procinfo import read_cmdline, read_comm
from gpuherd.ids import GpuUuid

__all__ = ["Nvml", "NvmlBackend"]

_SIM_HINT = "or run on simulated GPUs with --backend sim"

# NVML error code -> (what went wrong, how to fix it). Codes from nvml.h.
_INIT_FAILURES: dict[int, tuple[str, str]] = {
    12: (
        "the NVML library (libnvidia-ml.so.1) was not found: no NVIDIA driver is installed "
        "or visible here",
        "install the NVIDIA driver; in a container use the NVIDIA runtime with "
        "NVIDIA_DRIVER_CAPABILITIES including 'utility'; `gpuherd doctor` shows what is "
        f"missing; {_SIM_HINT}",
    ),
    9: (
        "the NVIDIA kernel driver is not loaded",
        f"load it (`sudo modprobe nvidia`) and check `dmesg` for errors; {_SIM_HINT}",
    ),
    18: (
        "driver/library version mismatch: the user-space NVIDIA driver does not match the "
        "loaded kernel module",
        "the driver was upgraded without reloading the kernel module: reboot, or unload and "
        f"reload the nvidia modules; {_SIM_HINT}",
    ),
    4: (
        "no permission to open the NVIDIA devices (/dev/nvidia*)",
        f"run as a user in the group owning /dev/nvidiactl, or grant the container the GPU; "
        f"{_SIM_HINT}",
    ),
}


class Nvml:
    """The one choke point for NVML calls (after nvitop's `nvmlQuery`)."""

    def __init__(self, lib: Any = None) -> None:
        self._lib = lib
        self._ready = False

    @property
    def lib(self) -> Any:
        if self._lib is None:
            try:
                import pynvml
            except ImportError as exc:  # pragma: no cover - it is a hard dependency
                raise BackendUnavailable(
                    f"the nvidia-ml-py package is not importable: {exc}",
                    f"reinstall gpuherd with its dependencies; {_SIM_HINT}",
                ) from None
            self._lib = pynvml
        return self._lib

    def init(self) -> None:
        if self._ready:
            return
        lib = self.lib
        try:
            lib.nvmlInit()
        except lib.NVMLError as exc:
            code = int(getattr(exc, "value", -1))
            message, hint = _INIT_FAILURES.get(
                code,
                (
                    f"NVML failed to initialise: {exc}",
                    f"check the driver with `nvidia-smi` and `gpuherd doctor`; {_SIM_HINT}",
                ),
            )
            raise BackendUnavailable(message, hint) from None
        self._ready = True

    def query(self, func: str, *args: Any, **kwargs: Any) -> Any:
        """Call `pynvml.<func>`; None when NVML says the value is unavailable."""
        self.init()
        lib = self.lib
        call = getattr(lib, func, None)
        if call is None:  # a function this nvidia-ml-py version does not have
            return None
        try:
            value = call(*args, **kwargs)
        except lib.NVMLError:
            return None
        if isinstance(value, bytes):
            return value.decode(errors="replace")
        return value

    def shutdown(self) -> None:
        if self._ready:
            self.query("nvmlShutdown")
            self._ready = False


_UTIL_WINDOW = 5.0  # seconds of per-process samples a snapshot looks back over


def _cuda_version(raw: int | None) -> str | None:
    # NVML encodes CUDA 12.4 as 12040.
    return None if raw is None else f"{raw // 1000}.{(raw % 1000) // 10}"


class NvmlBackend:
    """Snapshots of the real GPUs. Constructing it initialises NVML (and may raise)."""

    name = "nvml"

    def __init__(self, lib: Any = None) -> None:
        self.nvml = Nvml(lib)
        self.nvml.init()
        count = self.nvml.query("nvmlDeviceGetCount")
        if not count:
            self.nvml.shutdown()
            raise BackendUnavailable(
                "NVML initialised but found no NVIDIA GPU",
                "check that the GPU is passed to this host or container (`gpuherd doctor`), "
                f"{_SIM_HINT}",
            )

    def close(self) -> None:
        self.nvml.shutdown()

    def snapshot(self) -> GpuSnapshot:
        q = self.nvml.query
        devices: list[GpuDevice] = []
        processes: list[GpuProcess] = []
        for index in range(q("nvmlDeviceGetCount") or 0):
            handle = q("nvmlDeviceGetHandleByIndex", index)
            if handle is None:
                continue
            device = self._device(index, handle)
            devices.append(device)
            processes.extend(self._processes(device, handle))
        return GpuSnapshot(
            backend=self.name,
            taken_at=time.time(),
            devices=tuple(devices),
            processes=tuple(processes),
            driver_version=q("nvmlSystemGetDriverVersion"),
            cuda_version=_cuda_version(q("nvmlSystemGetCudaDriverVersion")),
        )

    def memory_free(self) -> dict[int, int]:
        q = self.nvml.query
        free: dict[int, int] = {}
        for index in range(q("nvmlDeviceGetCount") or 0):
            handle = q("nvmlDeviceGetHandleByIndex", index)
            if handle is not None:
                free[index] = self._memory(handle)[2]
        return free

    def _memory(self, handle: Any) -> tuple[int, int, int, int | None]:
        """(total, used, free, reserved) of one device; reserved is None on old drivers."""
        q = self.nvml.query
        mem = q("nvmlDeviceGetMemoryInfo", handle, version=self.nvml.lib.nvmlMemory_v2)
        if mem is not None:
            return int(mem.total), int(mem.used), int(mem.free), int(mem.reserved)
        # Drivers before r510 lack the v2 struct; v1's `used` includes reserved memory.
        mem = q("nvmlDeviceGetMemoryInfo", handle)
        if mem is None:
            return 0, 0, 0, None
        return int(mem.total), int(mem.used), int(mem.free), None

    def _device(self, index: int, handle: Any) -> GpuDevice:
        q = self.nvml.query
        lib = self.nvml.lib
        total, used, free, reserved = self._memory(handle)
        rates = q("nvmlDeviceGetUtilizationRates", handle)
        return GpuDevice(
            index=index,
            uuid=GpuUuid(q("nvmlDeviceGetUUID", handle) or f"GPU-unknown-{index}"),
            name=q("nvmlDeviceGetName", handle) or "NVIDIA GPU",
            memory_total=total,
            memory_used=used,
            memory_free=free,
            memory_reserved=reserved,
            utilization=None if rates is None else int(rates.gpu),
            temperature=q("nvmlDeviceGetTemperature", handle, lib.NVML_TEMPERATURE_GPU),
        )

    def _processes(self, device: GpuDevice, handle: Any) -> list[GpuProcess]:
        q = self.nvml.query
        found: dict[int, tuple[int | None, ProcessKind]] = {}
        for kind, func in (
            ("compute", "nvmlDeviceGetComputeRunningProcesses"),
            ("graphics", "nvmlDeviceGetGraphicsRunningProcesses"),
        ):
            for proc in q(func, handle) or ():
                used = proc.usedGpuMemory  # None where NVML cannot tell (MIG, WDDM)
                if proc.pid in found:
                    previous, _ = found[proc.pid]
                    found[proc.pid] = (
                        previous if previous is not None else used,
                        "compute+graphics",
                    )
                else:
                    found[proc.pid] = (used, kind)  # type: ignore[assignment]
        busy = self._process_utilization(handle) if found else None
        return [
            GpuProcess(
                gpu_index=device.index,
                gpu_uuid=device.uuid,
                pid=pid,
                used_bytes=None if used is None else int(used),
                kind=kind,
                name=read_comm(pid),
                cmdline=read_cmdline(pid),
                utilization=None if busy is None else busy.get(pid, 0),
            )
            for pid, (used, kind) in sorted(found.items())
        ]

    def _process_utilization(self, handle: Any) -> dict[int, int] | None:
        """Each process's busiest kernel, encoder or decoder share over the last seconds
        (a transcode runs on NVENC/NVDEC, not the SMs); None where the driver cannot tell."""
        since = int((time.time() - _UTIL_WINDOW) * 1e6)  # NVML stamps samples in CPU microseconds
        samples = self.nvml.query("nvmlDeviceGetProcessUtilization", handle, since)
        if samples is None:
            return None
        busy: dict[int, int] = {}
        for s in samples:
            util = max(int(s.smUtil), int(s.encUtil), int(s.decUtil))
            busy[int(s.pid)] = max(busy.get(int(s.pid), 0), util)
        return busy
