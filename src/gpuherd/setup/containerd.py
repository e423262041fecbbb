"""containerd's config.toml (1.x config version 1 and 2, 2.x version 3): the `nvidia` runtime.

The runtime goes into the CRI plugin table of the file's version, carries the runc runtime's
options (a missing `SystemdCgroup` on a systemd-cgroup node crash-loops CNI pods), and is written
to a drop-in where the config imports them. Before containerd 2.1 an imported file replaces
whole plugin tables instead of merging them, so the drop-in repeats the full CRI plugin table.
"""

from __future__ import annotations

import copy
import glob
import os
import tomllib
from dataclasses import dataclass, field
from typing import Any

import tomlkit
import tomlkit.exceptions
from tomlkit.items import Table
from tomlkit.toml_document import TOMLDocument

from gpuherd.runtimecfg.base import Root
from gpuherd.setup import tomledit
from gpuherd.setup.model import Change, Plan, Refusal, SetupInputError
from gpuherd.setup.tomledit import TableLike

CONFIG = "/etc/containerd/config.toml"
DROP_IN_NAME = "99-gpuherd-nvidia.toml"
CRI_PLUGIN = {1: "cri", 2: "io.containerd.grpc.v1.cri", 3: "io.containerd.cri.v1.runtime"}
RUNC_V2 = "io.containerd.runc.v2"
# Options that must match runc's or pods behave differently under the nvidia runtime.
MUST_MATCH = ("SystemdCgroup",)


def config_version(doc: TOMLDocument | dict[str, Any], path: str) -> int:
    version = doc.get("version", 1)
    version = tomledit.plain(version)
    if not isinstance(version, int) or isinstance(version, bool) or version not in CRI_PLUGIN:
        raise SetupInputError(path, f"version = {version!r}: containerd knows versions 1, 2 and 3")
    return version


@dataclass
class Wiring:
    reasons: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)


def _is_nvidia_binary(root: Root, value: Any) -> bool:
    if not isinstance(value, str) or not value:
        return False
    found = root.which(value)
    return found is not None and "nvidia-container-runtime" in found.rsplit("/", 1)[-1]


def dig(data: Any, *keys: str) -> dict[str, Any]:
    """The table at `keys`, {} where any step is missing or not a table."""
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data if isinstance(data, dict) else {}


def reference_options(effective: dict[str, Any], version: int) -> tuple[str, dict[str, Any]]:
    """The runtime whose options the nvidia runtime copies: the default one unless it is nvidia."""
    section = dig(effective, "plugins", CRI_PLUGIN[version], "containerd")
    runtimes = dig(section, "runtimes")
    name = section.get("default_runtime_name", "runc")
    if not isinstance(name, str) or "nvidia" in name or name not in runtimes:
        name = "runc"
    return name, dig(runtimes, name, "options")


def wire(
    doc: TOMLDocument,
    *,
    path: str,
    version: int,
    root: Root,
    binary: str,
    reference: tuple[str, dict[str, Any]],
    set_default: bool,
    cdi: bool,
) -> Wiring:
    """Edit `doc` in place so its CRI plugin has a correct `nvidia` runtime; say what changed."""
    result = Wiring()
    plugin_name = CRI_PLUGIN[version]
    label = f'plugins."{plugin_name}".containerd.runtimes.nvidia'
    plugins = tomledit.ensure_table(doc, "plugins", path, super_table=True)
    plugin = tomledit.ensure_table(plugins, plugin_name, path, super_table=True)
    containerd = tomledit.ensure_table(plugin, "containerd", path, super_table=not set_default)
    runtimes = tomledit.ensure_table(containerd, "runtimes", path, super_table=True)
    ref_name, ref_options = reference
    nvidia = tomledit.get_table(runtimes, "nvidia", path)
    if nvidia is None:
        nvidia = _new_runtime(runtimes, path, binary, ref_name, ref_options)
        copied = [k for k in ref_options if k != "BinaryName"]
        result.reasons.append(
            f"add [{label}] (BinaryName {binary!r}"
            + (f"; {', '.join(copied)} copied from {ref_name!r}" if copied else "")
            + ")"
        )
    else:
        _fix_runtime(
            nvidia,
            path=path,
            root=root,
            binary=binary,
            ref_name=ref_name,
            ref_options=ref_options,
            result=result,
        )
        if not result.reasons:
            options = tomledit.plain(nvidia.get("options", {}))
            shown = ", ".join(f"{k} = {v!r}" for k, v in options.items())
            result.evidence.append(f"{path}: [{label}] {shown}")
    current_default = tomledit.plain(containerd.get("default_runtime_name"))
    if set_default and current_default != "nvidia":
        tomledit.set_key(containerd, "default_runtime_name", "nvidia")
        result.reasons.append(f"default_runtime_name {current_default!r} -> 'nvidia'")
    elif current_default == "nvidia":
        result.evidence.append(f'{path}: default_runtime_name = "nvidia"')
    if cdi and version >= 2 and tomledit.plain(plugin.get("enable_cdi")) is not True:
        tomledit.set_key(plugin, "enable_cdi", True)
        result.reasons.append(f'plugins."{plugin_name}".enable_cdi = true (--cdi)')
    return result


def _new_runtime(
    runtimes: TableLike, path: str, binary: str, ref_name: str, ref_options: dict[str, Any]
) -> TableLike:
    sibling = tomledit.get_table(runtimes, ref_name, path)
    ref_type = tomledit.plain(sibling.get("runtime_type")) if sibling is not None else None
    table = tomlkit.table()
    table["runtime_type"] = ref_type if ref_type == RUNC_V2 else RUNC_V2
    table.add(tomlkit.nl())
    options = tomlkit.table()
    for key, value in ref_options.items():
        if key != "BinaryName":
            options[key] = copy.deepcopy(value)
    options["BinaryName"] = binary
    options.add(tomlkit.nl())
    table["options"] = options
    trailing = tomledit.detach_trailing_comments(runtimes)
    runtimes["nvidia"] = table
    found = tomledit.get_table(runtimes, "nvidia", path)
    assert found is not None
    placed = tomledit.concrete(found)
    tomledit.style_like(placed, _style_model(runtimes, sibling), tomledit.header_indent(runtimes))
    tomledit.append_items(placed, trailing)
    return placed


def _style_model(runtimes: TableLike, sibling: TableLike | None) -> Table | None:
    """A runtime table written with an options sub-table shows how this file indents one."""
    first = None if sibling is None else tomledit.concrete(sibling)
    candidates = [first] + [v for _k, v in runtimes.items() if isinstance(v, Table)]
    for table in candidates:
        if table is not None and any(isinstance(v, Table) for _k, v in table.items()):
            return table
    return first


def _fix_runtime(
    nvidia: TableLike,
    *,
    path: str,
    root: Root,
    binary: str,
    ref_name: str,
    ref_options: dict[str, Any],
    result: Wiring,
) -> None:
    if tomledit.plain(nvidia.get("runtime_type")) is None:
        tomledit.set_key(nvidia, "runtime_type", RUNC_V2)
        result.reasons.append(f'nvidia runtime_type = "{RUNC_V2}"')
    options = tomledit.ensure_table(nvidia, "options", path)
    current = tomledit.plain(options.get("BinaryName"))
    if not _is_nvidia_binary(root, current):
        tomledit.set_key(options, "BinaryName", binary)
        result.reasons.append(f"nvidia BinaryName {current!r} -> {binary!r}")
    for key, value in ref_options.items():
        if key == "BinaryName":
            continue
        mine = tomledit.plain(options.get(key))
        if key not in options or (key in MUST_MATCH and mine != value):
            was = "missing" if key not in options else repr(mine)
            tomledit.set_key(options, key, copy.deepcopy(value))
            result.reasons.append(f"nvidia {key} {was} -> {value!r} (as {ref_name!r} has it)")


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _imports(root: Root, data: dict[str, Any], config: str) -> tuple[list[str], str | None]:
    """(imported files that exist, the drop-in directory a new file would be imported from)."""
    patterns = data.get("imports", [])
    if not isinstance(patterns, list):
        return [], None
    base = os.path.dirname(config)
    files: list[str] = []
    drop_dir = None
    for pattern in patterns:
        if not isinstance(pattern, str):
            continue
        inner = pattern if pattern.startswith("/") else os.path.join(base, pattern)
        if drop_dir is None and inner.endswith("/*.toml"):
            drop_dir = inner.rsplit("/", 1)[0]
        for found in sorted(glob.glob(str(root / inner))):
            if os.path.isfile(found):  # a pattern naming a directory imports nothing
                files.append("/" + os.path.relpath(found, root.path))
    return files, drop_dir


def plan_containerd(
    root: Root,
    binary: str,
    *,
    set_default: bool,
    cdi: bool,
    target: str = "containerd",
    config: str = CONFIG,
    restart: list[str] | None = None,
    effective_config: list[str] | None = None,
) -> Plan:
    plan = Plan(
        target,
        effective_config=effective_config or ["containerd", "config", "dump"],
    )
    outside = root / config
    if not outside.exists():
        plan.refusal = Refusal(
            f"{config} does not exist: containerd runs on built-in defaults",
            f"write the defaults first: containerd config default > {config}, then run again",
        )
        return plan
    raw = outside.read_bytes()
    doc = tomledit.parse(config, raw)
    version = config_version(doc, config)
    data = doc.unwrap()
    disabled = data.get("disabled_plugins", [])
    if isinstance(disabled, list) and (
        CRI_PLUGIN[version] in disabled
        or "cri" in disabled
        or "io.containerd.grpc.v1.cri" in disabled
    ):
        plan.evidence.append(
            f"{config}: disabled_plugins has the CRI plugin: this containerd serves Docker only "
            "(wire Docker instead)"
        )
        return plan
    imported, drop_dir = _imports(root, data, config) if version >= 2 else ([], None)
    parsed: dict[str, TOMLDocument] = {config: doc}
    effective = data
    for path in imported:
        parsed[path] = tomledit.parse(path, (root / path).read_bytes())
        effective = deep_merge(effective, parsed[path].unwrap())
    reference = reference_options(effective, version)
    owners = [p for p in parsed if _defines_nvidia(parsed[p].unwrap(), version)]
    if owners:
        path = owners[-1]  # the last one read wins
        before: bytes | None = raw if path == config else (root / path).read_bytes()
        target_doc = parsed[path]
    elif drop_dir is not None:
        path = f"{drop_dir}/{DROP_IN_NAME}"
        before = None
        target_doc = _drop_in(doc, version, config)
        plan.notes.append(
            f"{path} repeats the whole CRI plugin table of {config}: before containerd 2.1 an "
            "imported file replaces whole tables; later edits to that table belong in the drop-in"
        )
    else:
        path, before, target_doc = config, raw, doc
    try:
        wiring = wire(
            target_doc,
            path=path,
            version=version,
            root=root,
            binary=binary,
            reference=reference,
            set_default=set_default,
            cdi=cdi,
        )
        after = tomledit.dumps(target_doc) if wiring.reasons else b""
    except (tomlkit.exceptions.TOMLKitError, IndexError, KeyError) as exc:
        # The editor's limit, not the user's mistake: say so and leave the file to a person.
        raise SetupInputError(
            path, f"gpuherd cannot edit this layout safely ({exc!r}); add the runtime by hand"
        ) from None
    plan.evidence += wiring.evidence
    if wiring.reasons:
        _check_result(path, after, version)
        plan.changes.append(Change(path, before, after, "; ".join(wiring.reasons)))
        plan.commands.append(restart or ["systemctl", "restart", "containerd"])
    return plan


def _defines_nvidia(data: dict[str, Any], version: int) -> bool:
    return "nvidia" in dig(data, "plugins", CRI_PLUGIN[version], "containerd", "runtimes")


def _drop_in(main: TOMLDocument, version: int, config: str) -> TOMLDocument:
    doc = tomlkit.document()
    doc.add(tomlkit.comment(f"Written by gpuherd setup runtime: the nvidia runtime for {config}."))
    doc.add(
        tomlkit.comment("Repeats the CRI plugin table: containerd < 2.1 replaces whole tables.")
    )
    doc["version"] = version
    doc.add(tomlkit.nl())
    plugins = tomledit.get_table(main, "plugins", config)
    cri = tomledit.get_table(plugins, CRI_PLUGIN[version], config) if plugins is not None else None
    if cri is not None:
        holder = tomlkit.table(is_super_table=True)
        # A table spread over the file (a proxy) cannot be deep-copied: rebuild it from values.
        holder[CRI_PLUGIN[version]] = (
            copy.deepcopy(cri) if isinstance(cri, Table) else tomlkit.item(cri.unwrap())
        )
        doc["plugins"] = holder
        placed = tomledit.get_table(
            tomledit.get_table(doc, "plugins", config) or doc, CRI_PLUGIN[version], config
        )
        if placed is not None:
            tomledit.reindent_from_zero(placed)
    return doc


def _check_result(path: str, after: bytes, version: int) -> None:
    """What we are about to write must parse and carry the runtime: never write a broken file."""
    try:
        data = tomllib.loads(after.decode())
    except tomllib.TOMLDecodeError as exc:  # a tomlkit bug; refuse rather than break containerd
        raise SetupInputError(
            path, f"the edited file would not parse ({exc}); nothing written"
        ) from None
    if not _defines_nvidia(data, version):
        raise SetupInputError(path, "the edit did not take; nothing written")
