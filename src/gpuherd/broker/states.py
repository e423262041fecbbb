"""Job and release states, and the moves between them.

The journal enforces the tables where the state is stored, so a job can only move from the
right state: a finished job never runs again, a released tenant is never "released" twice.
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    QUEUED = "queued"
    RELEASING = "releasing"  # its victims are being released
    STARTING = "starting"  # launching its process
    RUNNING = "running"
    RESTORING = "restoring"  # it ended; its victims are coming back
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in FINAL_JOB_STATES


FINAL_JOB_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})

_ENDINGS = FINAL_JOB_STATES
JOB_MOVES: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RELEASING, *_ENDINGS}),
    JobState.RELEASING: frozenset({JobState.STARTING, JobState.RESTORING, *_ENDINGS}),
    JobState.STARTING: frozenset({JobState.RUNNING, JobState.RESTORING, *_ENDINGS}),
    JobState.RUNNING: frozenset({JobState.RESTORING, *_ENDINGS}),
    # Replay re-enters it; a job that never started goes back to the queue through it.
    JobState.RESTORING: frozenset({JobState.RESTORING, JobState.QUEUED, *_ENDINGS}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


class ReleaseState(StrEnum):
    """One release of one tenant: intent -> released -> restore_intent -> restored, with
    restore_failed looping back to restore_intent on each retry."""

    INTENT = "intent"
    RELEASED = "released"
    RESTORE_INTENT = "restore_intent"
    RESTORED = "restored"
    RESTORE_FAILED = "restore_failed"


OPEN_RELEASE_STATES = (
    ReleaseState.INTENT,
    ReleaseState.RELEASED,
    ReleaseState.RESTORE_INTENT,
    ReleaseState.RESTORE_FAILED,
)

RELEASE_MOVES: dict[ReleaseState, frozenset[ReleaseState]] = {
    ReleaseState.INTENT: frozenset({ReleaseState.RELEASED, ReleaseState.RESTORE_INTENT}),
    ReleaseState.RELEASED: frozenset({ReleaseState.RESTORE_INTENT}),
    ReleaseState.RESTORE_INTENT: frozenset(
        {ReleaseState.RESTORED, ReleaseState.RESTORE_FAILED, ReleaseState.RESTORE_INTENT}
    ),
    ReleaseState.RESTORE_FAILED: frozenset({ReleaseState.RESTORE_INTENT}),
    ReleaseState.RESTORED: frozenset(),
}


class TenantState(StrEnum):
    """What `status` and the metrics call a tenant."""

    RUNNING = "running"
    RELEASING = "releasing"
    RELEASED = "released"
    RESTORING = "restoring"
    FAILED = "failed"


TENANT_STATE_OF_RELEASE: dict[ReleaseState, TenantState] = {
    ReleaseState.INTENT: TenantState.RELEASING,
    ReleaseState.RELEASED: TenantState.RELEASED,
    ReleaseState.RESTORE_INTENT: TenantState.RESTORING,
    ReleaseState.RESTORE_FAILED: TenantState.FAILED,
}
