"""Build the actuator for one `preempt` entry of a tenant."""

from __future__ import annotations

from gpuherd.actuators.base import Actuator
from gpuherd.actuators.command import CommandActuator
from gpuherd.actuators.http import HttpActuator, OllamaActuator, VllmSleepActuator
from gpuherd.actuators.signal import SignalActuator
from gpuherd.spec.model import PreemptMethod


class UnsupportedMethod(Exception):
    pass


def actuator_for(method: PreemptMethod) -> Actuator:
    if method.command is not None:
        return CommandActuator(method.command.release, method.command.restore)
    if method.signal is not None:
        return SignalActuator(method.signal.signal, method.signal.grace, method.signal.start)
    if method.ollama is not None:
        return OllamaActuator(method.ollama.url, method.ollama.reload)
    if method.vllm_sleep is not None:
        return VllmSleepActuator(method.vllm_sleep.url, method.vllm_sleep.level)
    if method.http is not None:
        h = method.http
        release = (h.release.method, h.release.url, h.release.json_body) if h.release else None
        restore = (h.restore.method, h.restore.url, h.restore.json_body) if h.restore else None
        return HttpActuator(
            preset=h.preset, url=h.url, model=h.model, release=release, restore=restore
        )
    raise UnsupportedMethod(f"the {method.kind} method is not available in this version")
