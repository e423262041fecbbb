"""The rule registry: one module per rule, each with ID, SEVERITY, check() and a docstring."""

from types import ModuleType

from gpuherd.lint.rules import gpu_limits, gpu_zero, visible_devices

RULES: dict[str, ModuleType] = {m.ID: m for m in (gpu_limits, visible_devices, gpu_zero)}
