"""Ask for the GPU resource the device plugin actually advertises.

What it does: when a device-plugin config in the input renames a shared resource
(`renameByDefault: true` gives `nvidia.com/gpu.shared`; `rename:` gives its own name), flags
workloads that still ask for the original name. The reverse, asking for `*.shared` while no
sharing config is in the input, is reported as info.

Why it matters: on a node with a renamed resource the original name is advertised as 0; the pod
stays Pending with "Insufficient nvidia.com/gpu".

Example:
    renameByDefault: true                     # in the plugin config
    limits: {nvidia.com/gpu: 1}               # in the Deployment

Fix: request the advertised name, e.g. `nvidia.com/gpu.shared: 1`.
"""

from __future__ import annotations

from collections.abc import Iterator

from gpuherd.lint.model import Problem, Severity
from gpuherd.lint.rules.api import Options, RuleOptions
from gpuherd.lint.rules.base import LintContext, finding
from gpuherd.lint.sources.access import as_dict
from gpuherd.lint.sources.device_plugin import PluginConfig
from gpuherd.lint.sources.k8s import K8sObject, containers

ID = "shared-name"
SEVERITY: Severity = "error"
OPTIONS: Options = {}


_SELECT_LABEL = "nvidia.com/device-plugin.config"


def _node_config_keys(ctx: LintContext) -> dict[str, str]:
    """Node name -> the device-plugin config key its label selects."""
    keys = {}
    for node in ctx.objects:
        if node.kind == "Node":
            value = as_dict(node.metadata.get("labels")).get(_SELECT_LABEL)
            if value is not None:
                keys[node.name] = str(value)
    return keys


def _renames_for(obj: K8sObject, ctx: LintContext, node_keys: dict[str, str]) -> dict[str, str]:
    """Original -> advertised names that apply to this workload's node.

    A ConfigMap with several keys holds one config per node label; for a workload whose node
    (and its label) the input does not show, only renames every key agrees on are certain.
    """
    groups: dict[str | None, list[PluginConfig]] = {}
    for config in ctx.plugin_configs:
        if ctx.same_project(obj.doc.source, config.file):
            groups.setdefault(config.group, []).append(config)
    spec = obj.pod_spec()
    node = None
    if spec is not None:
        node = spec[1].get("nodeName") or as_dict(spec[1].get("nodeSelector")).get(
            "kubernetes.io/hostname"
        )
    renamed: dict[str, str] = {}
    for group, configs in groups.items():
        if group is None or len(configs) == 1:
            for config in configs:
                renamed.update(_changed(config))
            continue
        key = node_keys.get(str(node)) if node is not None else None
        chosen = [c for c in configs if c.key == key] if key is not None else []
        if chosen:
            renamed.update(_changed(chosen[0]))
        else:
            maps = [_changed(c) for c in configs]
            renamed.update({o: n for o, n in maps[0].items() if all(m.get(o) == n for m in maps)})
    return renamed


def _changed(config: PluginConfig) -> dict[str, str]:
    return {o: n for o, n in config.shared_names().items() if o != n}


def check(ctx: LintContext, options: RuleOptions) -> Iterator[Problem]:
    node_keys = _node_config_keys(ctx)
    for obj in ctx.objects:
        configs = [c for c in ctx.plugin_configs if ctx.same_project(obj.doc.source, c.file)]
        advertised = {n for c in configs for n in c.shared_names().values()}
        renamed = _renames_for(obj, ctx, node_keys) if configs else {}
        for c in containers(obj):
            for name in c.resources("limits"):
                if name not in renamed and not str(name).endswith(".shared"):
                    continue
                pos = c.key_pos("resources", "limits", name)
                if name in renamed:
                    yield finding(
                        c,
                        pos,
                        f"{name} is renamed to {renamed[name]} by the device-plugin config: this "
                        f"pod stays Pending on shared nodes",
                        f"request {renamed[name]} instead",
                    )
                elif str(name).endswith(".shared") and not configs:
                    yield finding(
                        c,
                        pos,
                        f"{name} needs a device-plugin sharing config with renameByDefault; none "
                        "is in the input",
                        "lint the plugin's config together with this file",
                        severity="info",
                    )
                elif str(name).endswith(".shared") and name not in advertised and configs:
                    yield finding(
                        c,
                        pos,
                        f"no device-plugin config in the input advertises {name}",
                        "set renameByDefault: true (or rename) in the sharing config",
                    )
