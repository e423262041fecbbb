"""The registry from preempt method kind to actuator: one line per method.

A method is available when it has a line here; `gpuherd validate` and `gpuherd serve` refuse a
config naming one that has none, so "could not release" never waits until 4 AM to show.
Methods that need a mode of the broker (Kubernetes) say so in `NEEDS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gpuherd.actuators.base import Actuator
from gpuherd.actuators.command import CommandActuator
from gpuherd.actuators.http import HttpActuator, OllamaActuator, VllmSleepActuator
from gpuherd.actuators.signal import SignalActuator
from gpuherd.spec.model import (
    METHOD_KINDS,
    CheckpointMethod,
    CommandMethod,
    HttpMethod,
    KubernetesMethod,
    OllamaMethod,
    PreemptMethod,
    SignalMethod,
    VllmSleepMethod,
)


class UnsupportedMethod(Exception):
    pass


def _http(h: HttpMethod) -> Actuator:
    release = (h.release.method, h.release.url, h.release.json_body) if h.release else None
    restore = (h.restore.method, h.restore.url, h.restore.json_body) if h.restore else None
    return HttpActuator(preset=h.preset, url=h.url, model=h.model, release=release, restore=restore)


def _checkpoint(m: CheckpointMethod) -> Actuator:
    from gpuherd.actuators.checkpoint import CheckpointActuator  # the CUDA bindings are an extra

    return CheckpointActuator(m.lock_timeout, move=m.move)


def _kubernetes(m: KubernetesMethod) -> Actuator:
    from gpuherd.actuators.kubernetes import KubernetesActuator  # the client is an extra

    return KubernetesActuator(m)


_FACTORIES: dict[type[Any], Callable[[Any], Actuator]] = {
    CommandMethod: lambda m: CommandActuator(m.release, m.restore),
    SignalMethod: lambda m: SignalActuator(m.signal, m.grace, m.start),
    OllamaMethod: lambda m: OllamaActuator(m.url, m.reload),
    VllmSleepMethod: lambda m: VllmSleepActuator(m.url, m.level),
    HttpMethod: _http,
    CheckpointMethod: _checkpoint,
    KubernetesMethod: _kubernetes,
}

# Methods that only work in a mode of the broker: kind -> (mode, the flag that turns it on).
NEEDS: dict[str, tuple[str, str]] = {
    "kubernetes": ("kubernetes", "the Kubernetes mode (gpuherd serve --kubernetes)"),
}
ALL_MODES = frozenset(mode for mode, _ in NEEDS.values())


def unavailable_kinds(*, modes: frozenset[str] = frozenset()) -> dict[str, str]:
    """Method kinds this gpuherd cannot run in the broker modes given, each with why."""
    have = {m.KIND for m in _FACTORIES}
    why = {}
    for kind in METHOD_KINDS:
        if kind not in have:
            why[kind] = (
                f"the {kind} method is not available in this version of gpuherd "
                f"(available: {', '.join(sorted(have))})"
            )
        elif kind in NEEDS and NEEDS[kind][0] not in modes:
            why[kind] = f"the {kind} method needs {NEEDS[kind][1]}"
    return why


def actuator_for(method: PreemptMethod) -> Actuator:
    factory = _FACTORIES.get(type(method))
    if factory is None:
        raise UnsupportedMethod(f"the {method.kind} method is not available in this version")
    return factory(method)
