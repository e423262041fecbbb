"""`command`: run an argv to release (systemctl stop, docker stop, ...) and another to restore.
Never through a shell: arguments are passed as they are written in gpuherd.yaml."""

from __future__ import annotations

import subprocess
from typing import Any

from gpuherd.actuators.base import ActContext, ActuatorError


class CommandActuator:
    kind = "command"

    def __init__(self, release: list[str], restore: list[str]) -> None:
        self._release = release
        self._restore = restore

    @staticmethod
    def _run(argv: list[str], ctx: ActContext, what: str) -> dict[str, Any]:
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=ctx.timeout, check=False
            )
        except FileNotFoundError:
            raise ActuatorError(f"{what} command not found: {argv[0]}") from None
        except subprocess.TimeoutExpired:
            raise ActuatorError(f"{what} command {argv[0]} ran over {ctx.timeout:g}s") from None
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise ActuatorError(
                f"{what} command {argv[0]} exited {done.returncode}: " + " | ".join(tail)
            )
        return {"argv": argv, "exit_code": 0}

    def release(self, ctx: ActContext) -> dict[str, Any]:
        return self._run(self._release, ctx, "release")

    def restore(self, ctx: ActContext, detail: dict[str, Any]) -> dict[str, Any]:
        return self._run(self._restore, ctx, "restore")
