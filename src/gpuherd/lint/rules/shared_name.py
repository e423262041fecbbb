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

import sys
from collections.abc import Iterator

from gpuherd.lint.model import Finding
from gpuherd.lint.rules.base import LintContext, finding
from gpuherd.lint.sources.k8s import containers

ID = "shared-name"
SEVERITY = "error"
_rule = sys.modules[__name__]


def check(ctx: LintContext) -> Iterator[Finding]:
    renamed: dict[str, str] = {}
    for config in ctx.plugin_configs:
        renamed.update({o: n for o, n in config.shared_names().items() if o != n})
    advertised = set(renamed.values())
    for obj in ctx.objects:
        for c in containers(obj):
            for name in c.resources("limits"):
                if name not in renamed and not str(name).endswith(".shared"):
                    continue
                pos = c.key_pos("resources", "limits", name)
                if name in renamed:
                    yield finding(
                        _rule,
                        c,
                        pos,
                        f"{name} is renamed to {renamed[name]} by the device-plugin config: this "
                        f"pod stays Pending on shared nodes",
                        f"request {renamed[name]} instead",
                    )
                elif str(name).endswith(".shared") and not ctx.plugin_configs:
                    yield finding(
                        _rule,
                        c,
                        pos,
                        f"{name} needs a device-plugin sharing config with renameByDefault; none "
                        "is in the input",
                        "lint the plugin's config together with this file",
                        severity="info",
                    )
                elif (
                    str(name).endswith(".shared") and name not in advertised and ctx.plugin_configs
                ):
                    yield finding(
                        _rule,
                        c,
                        pos,
                        f"no device-plugin config in the input advertises {name}",
                        "set renameByDefault: true (or rename) in the sharing config",
                    )
