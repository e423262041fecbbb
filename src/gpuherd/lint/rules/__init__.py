"""The rule registry: one module per rule, each with ID, SEVERITY, check() and a docstring."""

from types import ModuleType

from gpuherd.lint.rules import (
    capabilities,
    cdi,
    compose_gpu,
    ecs_agent,
    ecs_gpu,
    gpu_count,
    gpu_job_bounds,
    gpu_limits,
    gpu_privilege,
    gpu_toleration,
    gpu_zero,
    plugin_schema,
    pv_node,
    rolling_update,
    runtime_class,
    runtime_containerd,
    runtime_docker,
    runtime_toolkit,
    shared_name,
    shared_replicas,
    visible_devices,
    vram_oversubscribed,
)

RULES: dict[str, ModuleType] = {
    m.ID: m
    for m in (
        gpu_limits,
        gpu_count,
        runtime_class,
        shared_name,
        shared_replicas,
        plugin_schema,
        gpu_toleration,
        visible_devices,
        capabilities,
        gpu_privilege,
        cdi,
        rolling_update,
        gpu_job_bounds,
        pv_node,
        gpu_zero,
        vram_oversubscribed,
        compose_gpu,
        ecs_gpu,
        ecs_agent,
        runtime_toolkit,
        runtime_containerd,
        runtime_docker,
    )
}
