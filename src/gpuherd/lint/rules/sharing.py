"""Which GPU sharing applies to a pod: device-plugin configs of its project, per node group.

A ConfigMap with several keys holds one device-plugin config per node group; nodes pick theirs
with the `nvidia.com/device-plugin.config` label. A key's config applies to pods that select
those nodes (by that label, or by a Node in the input carrying it); for a pod whose nodes the
input does not show, only what every config of the group agrees on is certain. HAMi's vGPU
resources and KAI's fraction annotations share a GPU too.
"""

from __future__ import annotations

from typing import Any

from gpuherd.lint.rules.base import LintContext
from gpuherd.lint.sources.access import as_dict, as_list, dig
from gpuherd.lint.sources.device_plugin import PluginConfig
from gpuherd.lint.sources.k8s import K8sObject, containers

CONFIG_LABEL = "nvidia.com/device-plugin.config"
# HAMi: memory and core slices of a GPU requested beside nvidia.com/gpu.
HAMI_RESOURCES = ("nvidia.com/gpumem", "nvidia.com/gpumem-percentage", "nvidia.com/gpucores")
# KAI Scheduler: a fraction of one GPU, asked for in pod annotations.
KAI_ANNOTATIONS = ("gpu-fraction", "gpu-memory", "gpu-fraction-num-devices")


def _required_terms(spec: dict[str, Any]) -> list[dict[str, Any]]:
    terms = dig(
        spec,
        "affinity",
        "nodeAffinity",
        "requiredDuringSchedulingIgnoredDuringExecution",
        "nodeSelectorTerms",
    )
    exprs: list[dict[str, Any]] = []
    for term in as_list(terms):
        exprs += [e for e in as_list(as_dict(term).get("matchExpressions")) if isinstance(e, dict)]
    return exprs


def node_labels_selected(spec: dict[str, Any]) -> dict[str, set[str]]:
    """Label -> values the pod requires of its node (nodeSelector, required nodeAffinity In)."""
    chosen: dict[str, set[str]] = {
        str(k): {str(v)} for k, v in as_dict(spec.get("nodeSelector")).items()
    }
    for expr in _required_terms(spec):
        if expr.get("operator") == "In":
            chosen.setdefault(str(expr.get("key")), set()).update(
                str(v) for v in as_list(expr.get("values"))
            )
        elif expr.get("operator") == "Exists":
            chosen.setdefault(str(expr.get("key")), set())
    return chosen


def _selected_key(ctx: LintContext, obj: K8sObject) -> str | None:
    found = obj.pod_spec()
    if found is None:
        return None
    spec = found[1]
    wanted = node_labels_selected(spec)
    if len(wanted.get(CONFIG_LABEL, set())) == 1:
        return next(iter(wanted[CONFIG_LABEL]))
    host = spec.get("nodeName") or as_dict(spec.get("nodeSelector")).get("kubernetes.io/hostname")
    keys: set[str] = set()
    for node in ctx.of_kind("Node"):
        if not ctx.same_project(obj.doc.source, node.doc.source):
            continue
        labels = {str(k): str(v) for k, v in as_dict(node.metadata.get("labels")).items()}
        if CONFIG_LABEL not in labels:
            continue
        if host is not None:
            if node.name == str(host):
                keys.add(labels[CONFIG_LABEL])
        elif wanted and all(
            k in labels and (not vs or labels[k] in vs) for k, vs in wanted.items()
        ):
            keys.add(labels[CONFIG_LABEL])
    return next(iter(keys)) if len(keys) == 1 else None


def _timesliced(config: PluginConfig) -> dict[str, bool]:
    strategy, settings = config.sharing()
    if strategy is None:
        return {}
    strict = strategy == "timeSlicing" and settings.get("failRequestsGreaterThanOne") is True
    return dict.fromkeys(config.shared_names().values(), strict)


def shared_resources(
    ctx: LintContext, obj: K8sObject, strategy: str | None = None
) -> dict[str, bool]:
    """Advertised resource -> failRequestsGreaterThanOne, for resources shared on this pod's nodes.

    `strategy` limits it to "timeSlicing" or "mps" configs; None takes both."""
    groups: dict[str | None, list[PluginConfig]] = {}
    for config in ctx.plugin_configs:
        if ctx.same_project(obj.doc.source, config.file):
            groups.setdefault(config.group or config.label, []).append(config)
    shared: dict[str, bool] = {}
    for configs in groups.values():
        maps = [_timesliced(c) if strategy in (None, c.sharing()[0]) else {} for c in configs]
        if len(configs) == 1:
            shared.update(maps[0])
            continue
        key = _selected_key(ctx, obj)
        chosen = [m for c, m in zip(configs, maps, strict=True) if c.key == key]
        if key is not None and chosen:
            shared.update(chosen[0])
        else:
            common = {n for n in maps[0] if all(n in m for m in maps)}
            shared.update({n: all(m[n] for m in maps) for n in common})
    return shared


def fractional(obj: K8sObject) -> bool:
    """HAMi vGPU slices or a KAI fraction: the pod takes part of a GPU, not a whole one."""
    if any(a in obj.template_annotations() for a in KAI_ANNOTATIONS):
        return True
    return any(
        name in HAMI_RESOURCES
        for c in containers(obj)
        for name in (*c.resources("limits"), *c.resources("requests"))
    )
