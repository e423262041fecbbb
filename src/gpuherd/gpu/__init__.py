"""The hardware view: backend protocol, NVML and simulated backends, process attribution."""

from gpuherd.gpu.base import BackendUnavailable, GpuBackend, GpuDevice, GpuProcess, GpuSnapshot

__all__ = ["BackendUnavailable", "GpuBackend", "GpuDevice", "GpuProcess", "GpuSnapshot"]
