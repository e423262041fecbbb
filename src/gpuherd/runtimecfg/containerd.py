"""containerd's config.toml (plain, k3s/RKE2 `config.toml.tmpl`): nvidia runtime entries."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from typing import Any

from gpuherd.runtimecfg.base import Judgement, Root

# CRI plugin names of containerd config versions 2 and 3.
_CRI_PLUGINS = ("io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime")


@dataclass(frozen=True, slots=True)
class RuntimeEntry:
    name: str
    binary: str | None
    key: tuple[str, ...]


def parse_containerd(text: str) -> dict[str, Any]:
    """Parse TOML, dropping Go-template lines of k3s/RKE2 `.tmpl` files ({{ ... }})."""
    lines = [line for line in text.splitlines() if "{{" not in line]
    return tomllib.loads("\n".join(lines))


def runtime_entries(data: dict[str, Any]) -> list[RuntimeEntry]:
    plugins = data.get("plugins")
    entries: list[RuntimeEntry] = []
    if not isinstance(plugins, dict):
        return entries
    for plugin in _CRI_PLUGINS:
        runtimes = plugins.get(plugin, {}).get("containerd", {}).get("runtimes", {})
        if not isinstance(runtimes, dict):
            continue
        for name, spec in runtimes.items():
            options = spec.get("options", {}) if isinstance(spec, dict) else {}
            binary = options.get("BinaryName") if isinstance(options, dict) else None
            key = ("plugins", plugin, "containerd", "runtimes", name)
            entries.append(RuntimeEntry(name, binary if isinstance(binary, str) else None, key))
    return entries


def default_runtime(data: dict[str, Any]) -> tuple[str | None, tuple[str, ...]]:
    plugins = data.get("plugins", {})
    for plugin in _CRI_PLUGINS:
        section = plugins.get(plugin, {}).get("containerd", {}) if isinstance(plugins, dict) else {}
        if isinstance(section, dict) and isinstance(section.get("default_runtime_name"), str):
            key = ("plugins", plugin, "containerd", "default_runtime_name")
            return section["default_runtime_name"], key
    return None, ()


def nvidia_entries(data: dict[str, Any]) -> list[RuntimeEntry]:
    return [
        e
        for e in runtime_entries(data)
        if "nvidia" in e.name or (e.binary is not None and "nvidia" in e.binary)
    ]


def judge_containerd(data: dict[str, Any], root: Root, *, check_paths: bool) -> list[Judgement]:
    found: list[Judgement] = []
    for entry in nvidia_entries(data):
        if entry.binary is None:
            continue
        if check_paths and root.which(entry.binary) is None:
            found.append(
                Judgement(
                    "containerd-binary-missing",
                    "error",
                    f"runtime {entry.name!r} runs {entry.binary!r}, which does not exist",
                    "install nvidia-container-toolkit or correct BinaryName",
                    (*entry.key, "options", "BinaryName"),
                )
            )
        elif "nvidia-container-runtime" not in entry.binary.rsplit("/", 1)[-1]:
            found.append(
                Judgement(
                    "containerd-binary-odd",
                    "warning",
                    f"runtime {entry.name!r} runs {entry.binary!r}, not nvidia-container-runtime",
                    'BinaryName is normally "/usr/bin/nvidia-container-runtime"',
                    (*entry.key, "options", "BinaryName"),
                )
            )
    name, key = default_runtime(data)
    if name is not None and "nvidia" in name:
        found.append(
            Judgement(
                "containerd-default-nvidia",
                "info",
                f"default_runtime_name is {name!r}: every pod can see GPUs by setting "
                "NVIDIA_VISIBLE_DEVICES, without requesting nvidia.com/gpu",
                "keep runc as the default and give GPU pods runtimeClassName: nvidia",
                key,
            )
        )
    return found
