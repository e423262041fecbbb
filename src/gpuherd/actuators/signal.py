"""`signal`: stop the tenant's processes (TERM, then KILL after `grace`) and start it again with
`start`, detached, its output appended to a log in the state directory."""

from __future__ import annotations

import os
import signal as _signal
import subprocess
import time
from typing import Any

from gpuherd.actuators.base import ActContext, ActuatorError
from gpuherd.gpu.procinfo import start_ticks


def _alive(pid: int, ticks: int | None) -> bool:
    now = start_ticks(pid)
    return now is not None and (ticks is None or now == ticks)


class SignalActuator:
    kind = "signal"

    def __init__(
        self, signal: str = "TERM", grace: float = 10.0, start: list[str] | None = None
    ) -> None:
        name = signal.upper().removeprefix("SIG")
        self._signal = _signal.Signals[f"SIG{name}"]
        self._grace = grace
        self._start = start

    def release(self, ctx: ActContext) -> dict[str, Any]:
        # Each process's start time as attributed: a pid reused meanwhile must not be killed.
        known = ctx.identities
        if known is None:
            targets = {pid: start_ticks(pid) for pid in ctx.pids}
        else:  # only what was attributed to the tenant a moment ago
            targets = {pid: known[pid] for pid in ctx.pids if pid in known}
        signalled = []
        for pid, ticks in targets.items():
            if ticks is None or start_ticks(pid) != ticks:  # gone, or someone else now
                continue
            try:
                os.kill(pid, self._signal)
                signalled.append(pid)
            except ProcessLookupError:
                continue
            except PermissionError:
                raise ActuatorError(f"not allowed to signal pid {pid} of {ctx.tenant}") from None
        deadline = time.monotonic() + self._grace
        while time.monotonic() < deadline and any(_alive(p, targets[p]) for p in signalled):
            time.sleep(0.05)
        killed = [p for p in signalled if _alive(p, targets[p])]
        for pid in killed:
            try:
                os.kill(pid, _signal.SIGKILL)
            except ProcessLookupError:
                continue
        return {"signalled": signalled, "killed": killed, "signal": self._signal.name}

    def restore(self, ctx: ActContext, detail: dict[str, Any]) -> dict[str, Any]:
        if not self._start:
            raise ActuatorError(
                f"{ctx.tenant}: signal method has no `start` command to restore "
                "with; it must be restarted by its supervisor"
            )
        ctx.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        log = ctx.log_dir / f"{ctx.tenant}.log"
        with log.open("ab") as out:
            try:
                proc = subprocess.Popen(
                    self._start,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    env={**os.environ, **ctx.env},
                )
            except FileNotFoundError:
                raise ActuatorError(f"start command not found: {self._start[0]}") from None
        return {"pid": proc.pid, "log": str(log)}
