"""The registry of launchers, by name: one line per way of running a job."""

from __future__ import annotations

from collections.abc import Callable

from gpuherd.broker.launcher import Launcher
from gpuherd.broker.local import LocalLauncher

# Each takes the callback that wakes the engine when a job ends.
LauncherFactory = Callable[[Callable[[], None] | None], Launcher]


def _kubernetes(on_exit: Callable[[], None] | None) -> Launcher:
    from gpuherd.broker.kubejob import kube_mode_launcher  # the client is an extra

    return kube_mode_launcher(on_exit)


LAUNCHERS: dict[str, LauncherFactory] = {
    "local": lambda on_exit: LocalLauncher(on_exit=on_exit),
    "kubernetes": _kubernetes,  # Kubernetes Jobs, and local ones (serve --kubernetes)
}
