"""The user's declaration (gpuherd.yaml) as typed, validated objects."""

from gpuherd.ids import GpuName, GpuUuid, JobName, TenantName
from gpuherd.spec.load import SpecError, SpecIssue, load_config, parse_config
from gpuherd.spec.model import Config, GpuSpec, JobSpec, Match, TenantSpec, VramAmount

__all__ = [
    "Config",
    "GpuName",
    "GpuSpec",
    "GpuUuid",
    "JobName",
    "JobSpec",
    "Match",
    "SpecError",
    "SpecIssue",
    "TenantName",
    "TenantSpec",
    "VramAmount",
    "load_config",
    "parse_config",
]
