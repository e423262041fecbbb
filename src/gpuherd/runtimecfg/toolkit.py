"""nvidia-container-runtime's config.toml (/etc/nvidia-container-runtime/config.toml).

The runtime execs the first entry of `[nvidia-container-runtime] runtimes` that exists (default
["runc", "crun"]) and never checks that entry against itself: an entry that is, or wraps, the
nvidia runtime makes every container start loop (nvidia-container-toolkit
internal/oci/runtime_low_level.go).
"""

from __future__ import annotations

import re
from typing import Any

from gpuherd.runtimecfg.base import Judgement, Root

DEFAULT_RUNTIMES = ["runc", "crun"]
_NVIDIA_RUNTIME = re.compile(r"nvidia-container-runtime(?![\w.-])")


def _is_nvidia_runtime(root: Root, inner: str) -> str | None:
    """Why `inner` is the nvidia runtime or a wrapper of it; None if it is not."""
    final = root.resolve(inner)
    if final is None:
        return None
    if final != inner:
        link = f"{inner} links to {final}"
        if _NVIDIA_RUNTIME.search(final.rsplit("/", 1)[-1]):
            return link
    base = final.rsplit("/", 1)[-1]
    if base == "nvidia-container-runtime":
        return f"{inner} is the nvidia runtime itself"
    head = root.read_text(final, limit=65536) or ""
    if head.startswith("#!") and _NVIDIA_RUNTIME.search(head):
        return f"{final} is a script that runs nvidia-container-runtime"
    return None


_KEY = ("nvidia-container-runtime", "runtimes")
_LOOP_FIX = (
    'point `runtimes` at the real low-level runtime, e.g. ["/usr/bin/runc"] or the backup of '
    "the binary your wrapper replaced (runc.real)"
)


def _loops_by_name(runtimes: list[str]) -> list[Judgement]:
    """Without a filesystem: only an entry naming the nvidia runtime itself is certain."""
    return [
        Judgement(
            "toolkit-runtime-loop",
            "error",
            f"runtimes[{i}] = {name!r} is the nvidia runtime itself: every container start calls "
            "itself in a loop",
            _LOOP_FIX,
            (*_KEY, i),
        )
        for i, name in enumerate(runtimes)
        if name.rsplit("/", 1)[-1] == "nvidia-container-runtime"
    ]


def _loops_on_disk(runtimes: list[str], root: Root) -> list[Judgement]:
    """The entry the runtime will really exec (the first that exists), followed to its end."""
    chosen = next(((i, r) for i, r in enumerate(runtimes) if root.which(r) is not None), None)
    if chosen is None:
        return [
            Judgement(
                "toolkit-no-runtime",
                "error",
                f"none of the low-level runtimes {runtimes} exists, so the nvidia runtime cannot "
                "start any container",
                "install runc (or point `runtimes` at the runc binary you have)",
                _KEY,
            )
        ]
    index, name = chosen
    resolved = root.which(name)
    why = _is_nvidia_runtime(root, resolved) if resolved is not None else None
    if why is None:
        return []
    return [
        Judgement(
            "toolkit-runtime-loop",
            "error",
            f"runtimes[{index}] = {name!r} resolves back to the nvidia runtime ({why}): every "
            "container start calls itself in a loop",
            _LOOP_FIX,
            (*_KEY, index),
        )
    ]


def judge_toolkit_config(data: dict[str, Any], root: Root | None) -> list[Judgement]:
    """`root` None judges the file alone (lint): entries are taken by name, not looked up."""
    found: list[Judgement] = []
    section = data.get("nvidia-container-runtime")
    runtimes = DEFAULT_RUNTIMES
    if isinstance(section, dict) and "runtimes" in section:
        value = section["runtimes"]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            runtimes = value
        else:
            found.append(
                Judgement(
                    "toolkit-runtimes-type",
                    "error",
                    "`runtimes` must be a list of runtime names or paths",
                    'set runtimes = ["runc", "crun"]',
                    ("nvidia-container-runtime", "runtimes"),
                )
            )
    if root is None:
        found += _loops_by_name(runtimes)
    else:
        found += _loops_on_disk(runtimes, root)
    if data.get("accept-nvidia-visible-devices-envvar-when-unprivileged", True) is True:
        found.append(
            Judgement(
                "toolkit-envvar-unprivileged",
                "warning",
                "accept-nvidia-visible-devices-envvar-when-unprivileged is true (the default): any "
                "container can take every GPU by setting NVIDIA_VISIBLE_DEVICES=all, bypassing the "
                "scheduler's GPU accounting",
                "on shared nodes set it to false and "
                "accept-nvidia-visible-devices-as-volume-mounts = true, with the device "
                "plugin's deviceListStrategy: volume-mounts",
                ("accept-nvidia-visible-devices-envvar-when-unprivileged",),
            )
        )
    return found
