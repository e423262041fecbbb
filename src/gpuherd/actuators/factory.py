"""Build the actuator for one `preempt` entry of a tenant."""

from __future__ import annotations

from gpuherd.actuators.base import Actuator
from gpuherd.actuators.command import CommandActuator
from gpuherd.actuators.signal import SignalActuator
from gpuherd.spec.model import PreemptMethod


class UnsupportedMethod(Exception):
    pass


def actuator_for(method: PreemptMethod) -> Actuator:
    if method.command is not None:
        return CommandActuator(method.command.release, method.command.restore)
    if method.signal is not None:
        return SignalActuator(method.signal.signal, method.signal.grace, method.signal.start)
    raise UnsupportedMethod(f"the {method.kind} method is not available in this version")
