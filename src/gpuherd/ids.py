"""Typed names, so a tenant name is never passed where a GPU name is expected."""

from typing import NewType

GpuName = NewType("GpuName", str)
TenantName = NewType("TenantName", str)
JobName = NewType("JobName", str)
GpuUuid = NewType("GpuUuid", str)
JobId = NewType("JobId", str)  # one run of a job, as the journal names it
