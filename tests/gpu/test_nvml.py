"""The NVML backend against a fake pynvml that speaks the real types and errors."""

from __future__ import annotations

import pynvml
import pytest

from gpuherd.gpu.base import BackendUnavailable
from gpuherd.gpu.nvml import NvmlBackend
from tests.gpu.fake_nvml import FakeNvml


def test_snapshot_maps_every_field() -> None:
    backend = NvmlBackend(lib=FakeNvml())
    snap = backend.snapshot()
    assert (snap.backend, snap.driver_version, snap.cuda_version) == ("nvml", "550.54.14", "12.4")
    (dev,) = snap.devices
    assert dev.index == 0
    assert dev.name == "NVIDIA GeForce RTX 3080 Ti"
    assert dev.uuid == "GPU-5c3e8f0a-1b2c-4d5e-8f9a-0b1c2d3e4f5a"
    assert (dev.memory_total, dev.memory_used, dev.memory_free, dev.memory_reserved) == (
        12884901888,
        7784628224,
        4768661504,
        331612160,
    )
    assert (dev.utilization, dev.temperature) == (37, 54)
    assert [(p.pid, p.used_bytes, p.kind) for p in snap.processes] == [
        (977, None, "graphics"),  # usage unknown (WDDM/MIG): None, not 0
        (4242, 4294967296, "compute"),
        (5151, 1073741824, "compute+graphics"),
    ]
    assert all(p.gpu_uuid == dev.uuid for p in snap.processes)
    backend.close()


def test_unsupported_queries_become_none() -> None:
    lib = FakeNvml(
        unsupported=frozenset(
            {
                "nvmlDeviceGetTemperature",
                "nvmlDeviceGetUtilizationRates",
                "nvmlDeviceGetGraphicsRunningProcesses",
                "nvmlSystemGetCudaDriverVersion",
            }
        )
    )
    snap = NvmlBackend(lib=lib).snapshot()
    (dev,) = snap.devices
    assert (dev.temperature, dev.utilization, snap.cuda_version) == (None, None, None)
    assert [(p.pid, p.kind) for p in snap.processes] == [(4242, "compute"), (5151, "compute")]


def test_old_driver_without_memory_v2_falls_back_to_v1() -> None:
    (dev,) = NvmlBackend(lib=FakeNvml(no_memory_v2=True)).snapshot().devices
    assert (dev.memory_total, dev.memory_used, dev.memory_free) == (
        12884901888,
        8116240384,
        4768661504,
    )
    assert dev.memory_reserved is None


@pytest.mark.parametrize(
    ("code", "message", "hint"),
    [
        (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, "libnvidia-ml.so.1) was not found", "--backend sim"),
        (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, "kernel driver is not loaded", "modprobe nvidia"),
        (pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH, "driver/library version mismatch", "reboot"),
        (pynvml.NVML_ERROR_NO_PERMISSION, "no permission", "/dev/nvidiactl"),
        (pynvml.NVML_ERROR_UNKNOWN, "NVML failed to initialise: Unknown Error", "gpuherd doctor"),
    ],
)
def test_init_failures_explain_the_fix(code: int, message: str, hint: str) -> None:
    with pytest.raises(BackendUnavailable) as info:
        NvmlBackend(lib=FakeNvml(init_error=code))
    assert message in info.value.message
    assert hint in info.value.hint


def test_no_device_is_unavailable() -> None:
    lib = FakeNvml()
    lib.data["devices"] = []
    with pytest.raises(BackendUnavailable, match="found no NVIDIA GPU"):
        NvmlBackend(lib=lib)
    assert not lib.initialised  # shut down again before raising


def test_tripwire_guards_the_real_binding() -> None:
    with pytest.raises(AssertionError, match="real NVML binding"):
        NvmlBackend()


def test_function_missing_from_binding_is_none() -> None:
    backend = NvmlBackend(lib=FakeNvml())
    assert backend.nvml.query("nvmlDeviceGetSomethingFromTheFuture", 0) is None
