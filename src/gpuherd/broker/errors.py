"""Domain errors the broker's callers map to their own terms (HTTP status, exit code)."""

from __future__ import annotations

from gpuherd.broker.submission import SubmissionError


class UnknownJob(LookupError):
    """No job of that name in the config, or no run of that id."""


class AdhocDisabled(PermissionError):
    """Ad hoc jobs are off in this broker's config."""


__all__ = ["AdhocDisabled", "SubmissionError", "UnknownJob"]
