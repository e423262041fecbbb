"""The user's declaration (gpuherd.yaml) as typed, validated objects.

Names are resolved lazily (PEP 562): `gpuherd.spec.from_k8s`, used by the linter, must not pull
in pydantic and the whole model at import time.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from gpuherd.ids import GpuName, GpuUuid, JobName, TenantName

if TYPE_CHECKING:
    from gpuherd.spec.load import SpecError, SpecIssue, load_config, parse_config
    from gpuherd.spec.model import Config, GpuSpec, JobSpec, Match, TenantSpec, VramAmount

_LAZY = {
    "SpecError": "gpuherd.spec.load",
    "SpecIssue": "gpuherd.spec.load",
    "load_config": "gpuherd.spec.load",
    "parse_config": "gpuherd.spec.load",
    "Config": "gpuherd.spec.model",
    "GpuSpec": "gpuherd.spec.model",
    "JobSpec": "gpuherd.spec.model",
    "Match": "gpuherd.spec.model",
    "TenantSpec": "gpuherd.spec.model",
    "VramAmount": "gpuherd.spec.model",
}

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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gpuherd.spec' has no attribute {name!r}")
    return getattr(import_module(module), name)
