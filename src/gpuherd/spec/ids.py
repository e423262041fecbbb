"""Re-export of gpuherd.ids, where the typed names live (importable without pydantic)."""

from gpuherd.ids import GpuName, GpuUuid, JobName, TenantName

__all__ = ["GpuName", "GpuUuid", "JobName", "TenantName"]
