"""Who may act on a job: the one rule, kept apart from HTTP so it reads (and tests) alone."""

from __future__ import annotations


def may_cancel(*, peer: int | None, owner: int | None, broker: int) -> bool:
    """`peer` is the caller's uid on the unix socket, None over TCP (where the bearer token is
    the broker's own credential) or in-process. Root and the broker's own user may cancel any
    job; anyone else only the jobs they submitted (a job without a recorded owner came from the
    config's schedule, TCP or an older broker, and is theirs to cancel only if they are root
    or the broker's user)."""
    if peer is None or peer in (0, broker):
        return True
    return owner is not None and peer == owner
