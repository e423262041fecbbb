"""The toolkit's own config.toml: the low-level runtime it execs must not lead back to itself.

nvidia-container-runtime execs the first existing entry of `[nvidia-container-runtime] runtimes`
and never checks it against itself. Wrapper setups (seed: a runc wrapper that injects GPU
variables and calls `nvidia-container-runtime.real`) loop when that entry is the wrapper. The
chain is followed through symlinks and wrapper scripts, including renamed copies (`.real`).
"""

from __future__ import annotations

import re
from typing import Any

import tomlkit

from gpuherd.runtimecfg.base import Root
from gpuherd.runtimecfg.toolkit import DEFAULT_RUNTIMES
from gpuherd.setup import tomledit
from gpuherd.setup.model import Change, Plan, Refusal, SetupInputError

CONFIG = "/etc/nvidia-container-runtime/config.toml"
ENVVAR_KEY = "accept-nvidia-visible-devices-envvar-when-unprivileged"
MOUNTS_KEY = "accept-nvidia-visible-devices-as-volume-mounts"
_NVIDIA = re.compile(r"nvidia-container-runtime(?!-hook)(?:\.[\w-]+)?")
_WORD = re.compile(r"[\w./+-]+")
_REAL_RUNC = ("/usr/bin/runc", "/usr/sbin/runc", "/usr/local/bin/runc", "/usr/local/sbin/runc")


def leads_to_nvidia(root: Root, name: str, depth: int = 0) -> str | None:
    """Why running `name` ends in the nvidia runtime (a chain of links and scripts), or None."""
    found = root.which(name)
    if found is None or depth > 6:
        return None
    final = root.resolve(found) or found
    if _NVIDIA.fullmatch(final.rsplit("/", 1)[-1]):
        return f"{found} is the nvidia runtime" if final == found else f"{found} -> {final}"
    text = root.read_text(final, limit=65536) or ""
    if not text.startswith("#!"):
        return None
    for line in text.splitlines()[1:]:
        code = line.split("#", 1)[0]
        for word in _WORD.findall(code):
            if _NVIDIA.fullmatch(word.rsplit("/", 1)[-1]):
                return f"{final} is a script that runs {word}"
            if "/" in word and word != final:
                deeper = leads_to_nvidia(root, word, depth + 1)
                if deeper is not None:
                    return f"{final} runs {word}; {deeper}"
    return None


def _first_existing(root: Root, runtimes: list[str]) -> tuple[int, str] | None:
    return next(((i, r) for i, r in enumerate(runtimes) if root.which(r) is not None), None)


def _real_runtime(root: Root, runtimes: list[str], looping: str) -> str | None:
    """A low-level runtime that is not the nvidia runtime: the backup the wrapper replaced
    (`runc.real`) first, then the other entries, then the usual runc locations."""
    resolved = root.which(looping) or looping
    candidates = [f"{looping}.real", f"{resolved}.real", *runtimes, *_REAL_RUNC, "crun"]
    for candidate in candidates:
        if root.which(candidate) is not None and leads_to_nvidia(root, candidate) is None:
            return candidate
    return None


def plan_toolkit(root: Root, *, deny_envvar: bool) -> Plan:
    plan = Plan("toolkit", effective_config=["nvidia-ctk", "config"])
    outside = root / CONFIG
    before = outside.read_bytes() if outside.exists() else None
    doc = tomledit.parse(CONFIG, before) if before is not None else tomlkit.document()
    data: dict[str, Any] = doc.unwrap()
    section = data.get("nvidia-container-runtime", {})
    runtimes = section.get("runtimes", DEFAULT_RUNTIMES) if isinstance(section, dict) else None
    if not isinstance(runtimes, list) or not all(isinstance(r, str) for r in runtimes):
        raise SetupInputError(CONFIG, "[nvidia-container-runtime] runtimes must be a list of names")
    reasons: list[str] = []
    chosen = _first_existing(root, runtimes)
    if chosen is None:
        plan.refusal = Refusal(
            f"{CONFIG}: none of the low-level runtimes {runtimes} exists",
            "install runc (the package `runc`), or set runtimes to the runc binary you have",
        )
        return plan
    index, name = chosen
    why = leads_to_nvidia(root, name)
    if why is None:
        plan.evidence.append(f"{CONFIG}: runtimes[{index}] = {name!r} is a real runtime, no loop")
    else:
        real = _real_runtime(root, runtimes, name)
        if real is None:
            plan.refusal = Refusal(
                f"{CONFIG}: runtimes[{index}] = {name!r} loops back to the nvidia runtime ({why}) "
                "and no real runc was found",
                "install runc, or point runtimes at the runc binary your wrapper replaced",
            )
            return plan
        fixed = [real, *(r for r in runtimes if r != real and leads_to_nvidia(root, r) is None)]
        reasons.append(
            f"runtimes {runtimes} -> {fixed}: {name!r} loops back to the nvidia runtime ({why}); "
            f"{real!r} is the real low-level runtime"
        )
        table = tomledit.ensure_table(doc, "nvidia-container-runtime", CONFIG)
        table["runtimes"] = fixed
    envvar = data.get(ENVVAR_KEY, True)
    if envvar is True and deny_envvar:
        doc[ENVVAR_KEY] = False
        doc[MOUNTS_KEY] = True
        reasons.append(f"{ENVVAR_KEY} = false, {MOUNTS_KEY} = true (--deny-envvar-devices)")
        plan.notes.append(
            "set the device plugin's deviceListStrategy to volume-mounts, or pods that request "
            "nvidia.com/gpu get no GPU"
        )
    elif envvar is True:
        plan.notes.append(
            f"{ENVVAR_KEY} is true (the default): any container can take every GPU with "
            "NVIDIA_VISIBLE_DEVICES=all; --deny-envvar-devices turns it off"
        )
    if reasons:
        after = tomledit.dumps(doc)
        plan.changes.append(Change(CONFIG, before, after, "; ".join(reasons)))
    return plan
