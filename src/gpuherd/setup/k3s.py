"""k3s and RKE2: they write containerd's config.toml themselves on every start, so it is never
edited. Both add the nvidia runtimes by themselves when they start with the toolkit installed;
the default runtime is their own setting (`default-runtime`), written as a config.yaml.d drop-in.

Why not config.toml.tmpl: the base template (`{{ template "base" . }}`) already writes the
`[plugins."io.containerd.grpc.v1.cri".containerd]` table, so appending `default_runtime_name`
would define that table twice, which TOML (and containerd) reject; a full copy of the template
stops following k3s upgrades. The base template renders `default-runtime` itself.
"""

from __future__ import annotations

from typing import Any, Literal

import yaml

from gpuherd.runtimecfg.base import Root
from gpuherd.setup import tomledit
from gpuherd.setup.containerd import CRI_PLUGIN, config_version, dig
from gpuherd.setup.model import Change, Plan, SetupInputError

Distro = Literal["k3s", "rke2"]
DROP_IN_NAME = "90-gpuherd-nvidia.yaml"


def paths(distro: Distro) -> dict[str, str]:
    agent = f"/var/lib/rancher/{distro}/agent/etc/containerd"
    return {
        "rendered": f"{agent}/config.toml",
        "template": f"{agent}/config.toml.tmpl",
        "template_v3": f"{agent}/config-v3.toml.tmpl",
        "config": f"/etc/rancher/{distro}/config.yaml",
        "drop_in_dir": f"/etc/rancher/{distro}/config.yaml.d",
    }


def _service(root: Root, distro: Distro) -> str:
    for unit in (f"{distro}-agent", f"{distro}-server", distro):
        for directory in ("etc/systemd/system", "usr/lib/systemd/system", "lib/systemd/system"):
            if (root / f"{directory}/{unit}.service").exists():
                return unit
    return distro if distro == "k3s" else "rke2-server"


def _yaml_default(root: Root, inner: str) -> Any:
    text = root.read_text(inner)
    if text is None:
        return None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise SetupInputError(
            inner,
            str(getattr(exc, "problem", None) or exc),
            None if mark is None else mark.line + 1,
            None if mark is None else mark.column + 1,
        ) from None
    return data.get("default-runtime") if isinstance(data, dict) else None


def configured_default(root: Root, distro: Distro) -> tuple[Any, str | None]:
    """`default-runtime` as k3s reads it: config.yaml, then config.yaml.d/*.yaml (last wins)."""
    where = paths(distro)
    value: Any = None
    source = None
    found = _yaml_default(root, where["config"])
    if found is not None:
        value, source = found, where["config"]
    drop_dir = root / where["drop_in_dir"]
    for item in sorted(drop_dir.glob("*.yaml")) if drop_dir.is_dir() else []:
        inner = f"{where['drop_in_dir']}/{item.name}"
        found = _yaml_default(root, inner)
        if found is not None:
            value, source = found, inner
    return value, source


def plan_k3s(root: Root, distro: Distro, binary: str, *, set_default: bool) -> Plan:
    where = paths(distro)
    service = _service(root, distro)
    # RKE2 ships crictl beside its own config rather than as a k3s-style subcommand.
    ctl = (
        ["k3s", "crictl"]
        if distro == "k3s"
        else [
            "/var/lib/rancher/rke2/bin/crictl",
            "--config",
            "/var/lib/rancher/rke2/agent/etc/crictl.yaml",
        ]
    )
    plan = Plan(distro, effective_config=[*ctl, "info"])
    restart = ["systemctl", "restart", service]
    raw = (root / where["rendered"]).read_bytes() if (root / where["rendered"]).exists() else None
    runtimes: dict[str, Any] = {}
    rendered_default = None
    if raw is not None:
        doc = tomledit.parse(where["rendered"], raw).unwrap()
        version = config_version(doc, where["rendered"])
        section = dig(doc, "plugins", CRI_PLUGIN[version], "containerd")
        runtimes = dig(section, "runtimes")
        rendered_default = section.get("default_runtime_name")
    nvidia = runtimes.get("nvidia")
    if isinstance(nvidia, dict):
        binary_name = dig(nvidia, "options").get("BinaryName")
        plan.evidence.append(
            f"{where['rendered']} (written by {distro} at start): runtime nvidia, "
            f"BinaryName {binary_name!r}"
        )
    else:
        plan.notes.append(
            f"{distro} adds the nvidia runtimes when it starts with the toolkit installed "
            f"({binary}); it has not done so yet: restart {service}"
        )
        plan.commands.append(restart)
    for key in ("template", "template_v3"):
        text = root.read_text(where[key])
        if (
            text is not None
            and '{{ template "base" . }}' not in text
            and "DefaultRuntime" not in text
        ):
            plan.notes.append(
                f"{where[key]} is a full template of your own: {distro} renders config.toml from "
                "it, so its runtimes and default are yours to keep (gpuherd does not edit it)"
            )
    value, source = configured_default(root, distro)
    if value == "nvidia":
        plan.evidence.append(f"{source}: default-runtime: nvidia")
        if rendered_default != "nvidia" and restart not in plan.commands:
            plan.notes.append(f"default-runtime takes effect when {distro} restarts")
            plan.commands.append(restart)
    elif set_default:
        drop_in = f"{where['drop_in_dir']}/{DROP_IN_NAME}"
        outside = root / drop_in
        before = outside.read_bytes() if outside.exists() else None
        after = (
            f"# Written by gpuherd setup runtime --set-default: containerd's default runtime.\n"
            f"# {distro} renders it into {where['rendered']} when it starts.\n"
            "default-runtime: nvidia\n"
        ).encode()
        was = f" (was {value!r} in {source})" if value is not None else ""
        plan.changes.append(Change(drop_in, before, after, f"default-runtime: nvidia{was}"))
        if restart not in plan.commands:
            plan.commands.append(restart)
    elif value is not None:
        plan.notes.append(
            f"kept default-runtime {value!r} from {source} (--set-default changes it)"
        )
    return plan
