"""The NVIDIA device-plugin config must be one the plugin accepts, and mean what it says.

What it does: checks standalone device-plugin configs and those inside ConfigMaps: both
`timeSlicing` and `mps` set; `resources` missing or empty; a resource without `name`; `replicas`
missing, not a whole number or below 2 (the plugin rejects 1 since v0.12: one replica shares
nothing); `devices` other than "all", a count > 0 or a list;
per-GPU `devices` lists (silently dropped: sharing applies to every GPU); MPS together with a
MIG strategy.

Why it matters: the plugin refuses to start with an invalid config, and the node advertises no
GPUs at all; a dropped per-GPU setting shares GPUs you meant to keep whole.

Example:
    sharing:
      timeSlicing:
        resources: [{name: nvidia.com/gpu, replicas: 0}]

Fix: follow the plugin's schema: `resources: [{name: nvidia.com/gpu, replicas: N}]` with N >= 2.
"""

from __future__ import annotations

from collections.abc import Iterator

from gpuherd.lint.model import Problem, Severity
from gpuherd.lint.rules.api import Options, RuleOptions
from gpuherd.lint.rules.base import LintContext, config_finding, parse_count
from gpuherd.lint.sources.access import as_dict
from gpuherd.lint.sources.device_plugin import PluginConfig

ID = "plugin-schema"
SEVERITY: Severity = "error"
OPTIONS: Options = {}


def _check(config: PluginConfig) -> Iterator[Problem]:
    sharing = config.data.get("sharing")
    if not isinstance(sharing, dict):
        return
    both = [s for s in ("timeSlicing", "mps") if s in sharing]
    if len(both) > 1:
        yield config_finding(
            config,
            config.key_pos(("sharing", "mps")),
            "sharing sets both timeSlicing and mps: they are mutually exclusive",
            "keep one of them",
        )
    strategy, settings = config.sharing()
    if strategy is None:
        return
    base = ("sharing", strategy)
    flags = config.data.get("flags") if isinstance(config.data.get("flags"), dict) else {}
    mig = str(as_dict(flags).get("migStrategy", "none"))
    if strategy == "mps" and mig != "none":
        yield config_finding(
            config,
            config.value_pos(("flags", "migStrategy")),
            f"MPS sharing is not supported with migStrategy {mig}",
            "use time-slicing on MIG devices, or set migStrategy: none",
        )
    resources = settings.get("resources")
    if not isinstance(resources, list) or not resources:
        yield config_finding(
            config,
            config.value_pos((*base, "resources")),
            f"{strategy} needs a non-empty `resources` list: the plugin refuses the config",
            "add resources: [{name: nvidia.com/gpu, replicas: 4}]",
        )
        return
    for i, res in enumerate(resources):
        here = (*base, "resources", i)
        if not isinstance(res, dict) or not isinstance(res.get("name"), str):
            yield config_finding(
                config,
                config.value_pos(here),
                "each resource needs a `name` (e.g. nvidia.com/gpu)",
                "add name: nvidia.com/gpu",
            )
            continue
        replicas = res.get("replicas")
        count = parse_count(replicas)
        if count is None or count < 2:
            what = "missing" if replicas is None else f"{replicas!r}"
            yield config_finding(
                config,
                config.value_pos((*here, "replicas")),
                f"replicas is {what}: it must be a whole number >= 2 (the device plugin "
                "refuses the config and advertises no GPUs)",
                "set replicas: N (N >= 2), or remove the sharing section",
            )
        devices = res.get("devices")
        if isinstance(devices, str) and devices != "all":
            yield config_finding(
                config,
                config.value_pos((*here, "devices")),
                f"devices {devices!r}: the only string allowed is 'all'",
                "use devices: all, a count, or remove it",
            )
        elif isinstance(devices, int) and not isinstance(devices, bool) and devices <= 0:
            yield config_finding(
                config,
                config.value_pos((*here, "devices")),
                f"devices {devices}: a count must be above 0",
                "remove it",
            )
        elif isinstance(devices, list):
            yield config_finding(
                config,
                config.value_pos((*here, "devices")),
                "per-GPU `devices` lists are dropped: sharing applies to every GPU of the node",
                "remove devices; to keep some GPUs whole, use a separate node config "
                "(nvidia.com/device-plugin.config label)",
                severity="warning",
            )


def check(ctx: LintContext, options: RuleOptions) -> Iterator[Problem]:
    for config in ctx.plugin_configs:
        yield from _check(config)
