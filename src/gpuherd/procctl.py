"""Ending a process group: TERM, then KILL after a grace, whatever the leader did.

Children that ignore TERM (a renderer under a wrapper script) outlive their leader: the group,
not the leader, decides when the job is over.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable


def group_alive(pgid: int) -> bool:
    """Whether any process is still in the group (zombies count until reaped)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def terminate_group(
    pgid: int,
    *,
    grace: float,
    reap: Callable[[], object] = lambda: None,
    poll: float = 0.05,
    kill_wait: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> bool:
    """TERM the group, wait up to `grace` for it to empty, then KILL what is left and wait up
    to `kill_wait`. `reap` is called while waiting (a parent must reap its own child, or the
    zombie leader keeps the group alive). True once the group is gone."""
    for sig, wait_for in ((signal.SIGTERM, grace), (signal.SIGKILL, kill_wait)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        deadline = monotonic() + wait_for
        while True:
            reap()
            if not group_alive(pgid):
                return True
            if monotonic() >= deadline:
                break
            sleep(poll)
    return not group_alive(pgid)
