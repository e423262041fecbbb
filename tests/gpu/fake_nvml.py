"""A fake of the `pynvml` module for tests: same function names, same return types, same errors.

Answers come from a JSON payload (tests/fixtures/nvml). Structs are pynvml's own ctypes types and
errors pynvml's own NVMLError subclasses, so the backend code runs exactly as on a real host.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pynvml

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nvml"


class _Proc:
    """What nvmlDeviceGet*RunningProcesses returns per process (a 'friendly object')."""

    def __init__(self, pid: int, used: int | None) -> None:
        self.pid = pid
        self.usedGpuMemory = used


class FakeNvml:
    NVMLError = pynvml.NVMLError
    nvmlMemory_v2 = pynvml.nvmlMemory_v2
    NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU

    def __init__(
        self,
        payload: str = "rtx3080ti-host.json",
        *,
        init_error: int | None = None,
        unsupported: frozenset[str] = frozenset(),
        no_memory_v2: bool = False,
    ) -> None:
        self.data: dict[str, Any] = json.loads((FIXTURES / payload).read_text())
        self.init_error = init_error
        self.unsupported = unsupported
        self.no_memory_v2 = no_memory_v2
        self.initialised = False
        self.calls: list[str] = []

    def _enter(self, name: str) -> None:
        self.calls.append(name)
        if not self.initialised:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)
        if name in self.unsupported:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def _dev(self, handle: int) -> dict[str, Any]:
        devices: list[dict[str, Any]] = self.data["devices"]
        return devices[handle]

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise pynvml.NVMLError(self.init_error)
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self.initialised = False

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.data["devices"])

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.data["devices"]):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return index

    def nvmlDeviceGetName(self, handle: int) -> str:
        self._enter("nvmlDeviceGetName")
        return str(self._dev(handle)["name"])

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        self._enter("nvmlDeviceGetUUID")
        return str(self._dev(handle)["uuid"])

    def nvmlDeviceGetMemoryInfo(self, handle: int, version: int | None = None) -> Any:
        self._enter("nvmlDeviceGetMemoryInfo")
        dev = self._dev(handle)
        if version:
            if self.no_memory_v2:
                raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
            mem = pynvml.c_nvmlMemory_v2_t()
            mem.version = version
            for field in ("total", "reserved", "used", "free"):
                setattr(mem, field, dev["memory_v2"][field])
            return mem
        mem1 = pynvml.c_nvmlMemory_t()
        for field in ("total", "used", "free"):
            setattr(mem1, field, dev["memory_v1"][field])
        return mem1

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        self._enter("nvmlDeviceGetUtilizationRates")
        rates = pynvml.c_nvmlUtilization_t()
        rates.gpu = self._dev(handle)["utilization"]["gpu"]
        rates.memory = self._dev(handle)["utilization"]["memory"]
        return rates

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        self._enter("nvmlDeviceGetTemperature")
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return int(self._dev(handle)["temperature"])

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[_Proc]:
        self._enter("nvmlDeviceGetComputeRunningProcesses")
        return [_Proc(p["pid"], p["usedGpuMemory"]) for p in self._dev(handle)["compute_processes"]]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: int) -> list[_Proc]:
        self._enter("nvmlDeviceGetGraphicsRunningProcesses")
        return [
            _Proc(p["pid"], p["usedGpuMemory"]) for p in self._dev(handle)["graphics_processes"]
        ]

    NVML_MEMORY_ERROR_TYPE_UNCORRECTED = pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED
    NVML_VOLATILE_ECC = pynvml.NVML_VOLATILE_ECC

    def nvmlDeviceGetPersistenceMode(self, handle: int) -> int:
        self._enter("nvmlDeviceGetPersistenceMode")
        return int(self._dev(handle).get("persistence_mode", 1))

    def nvmlDeviceGetMigMode(self, handle: int) -> list[int]:
        self._enter("nvmlDeviceGetMigMode")
        mode = int(self._dev(handle).get("mig_mode", 0))
        return [mode, mode]  # [current, pending], as pynvml returns them

    def nvmlDeviceGetTotalEccErrors(self, handle: int, error_type: int, counter: int) -> int:
        self._enter("nvmlDeviceGetTotalEccErrors")
        assert (error_type, counter) == (
            self.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
            self.NVML_VOLATILE_ECC,
        )
        return int(self._dev(handle).get("uncorrected_ecc", 0))

    def nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        return str(self.data["driver_version"])

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._enter("nvmlSystemGetCudaDriverVersion")
        return int(self.data["cuda_driver_version"])
