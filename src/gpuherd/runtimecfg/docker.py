"""Docker's daemon.json (/etc/docker/daemon.json): the nvidia runtime's registration."""

from __future__ import annotations

from typing import Any

from gpuherd.runtimecfg.base import Judgement, Root

BUILTIN_RUNTIMES = {"runc", "io.containerd.runc.v2", "io.containerd.runtime.v1.linux"}


def judge_daemon_json(data: dict[str, Any], root: Root, *, check_paths: bool) -> list[Judgement]:
    """`check_paths`: also look for each runtime's binary under `root` (on a host, not in lint)."""
    found: list[Judgement] = []
    runtimes = data.get("runtimes")
    runtimes = runtimes if isinstance(runtimes, dict) else {}
    default = data.get("default-runtime")
    if isinstance(default, str) and default not in runtimes and default not in BUILTIN_RUNTIMES:
        found.append(
            Judgement(
                "docker-default-runtime-missing",
                "error",
                f"default-runtime is {default!r} but no runtime of that name is registered under "
                "`runtimes`: dockerd refuses to start",
                f'register it: "runtimes": {{"{default}": {{"path": "nvidia-container-runtime"}}}} '
                "(`sudo nvidia-ctk runtime configure --runtime=docker` writes this)",
                ("default-runtime",),
            )
        )
    for name, spec in runtimes.items():
        path = spec.get("path") if isinstance(spec, dict) else None
        if not isinstance(path, str) or not path:
            found.append(
                Judgement(
                    "docker-runtime-path",
                    "error",
                    f"runtime {name!r} has no `path`",
                    'give the binary, e.g. "path": "nvidia-container-runtime"',
                    ("runtimes", name),
                )
            )
        elif not check_paths and _looks_like_typo(path):
            found.append(
                Judgement(
                    "docker-runtime-path",
                    "error",
                    f"runtime {name!r} points at {path!r}: a typo of nvidia-container-runtime?",
                    'use "path": "nvidia-container-runtime"',
                    ("runtimes", name, "path"),
                )
            )
        elif check_paths and root.which(path) is None:
            found.append(
                Judgement(
                    "docker-runtime-path",
                    "error",
                    f"runtime {name!r} points at {path!r}, which does not exist",
                    "install nvidia-container-toolkit or correct the path (check for typos)",
                    ("runtimes", name, "path"),
                )
            )
    if default == "nvidia":
        found.append(
            Judgement(
                "docker-default-nvidia",
                "info",
                "nvidia is the default runtime: every container can see GPUs by setting "
                "NVIDIA_VISIBLE_DEVICES, even without --gpus",
                "keep runc as default and request GPUs with --gpus or a devices reservation",
                ("default-runtime",),
            )
        )
    return found


def _looks_like_typo(path: str) -> bool:
    import difflib

    base = path.rsplit("/", 1)[-1]
    target = "nvidia-container-runtime"
    return base != target and difflib.SequenceMatcher(None, base, target).ratio() >= 0.85


def nvidia_registered(data: dict[str, Any]) -> bool:
    runtimes = data.get("runtimes")
    return isinstance(runtimes, dict) and any(
        isinstance(spec, dict) and "nvidia" in str(spec.get("path", ""))
        for spec in runtimes.values()
    )
