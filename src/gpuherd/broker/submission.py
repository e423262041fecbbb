"""What was asked for: one submission, from the CLI, the API or a schedule, in one form.

The journal stores it as JSON (`to_json`) and hands it back (`from_json`); an ad hoc job's
fields are validated as a config job entry's at the edge and again when read back, so a
journal written by hand or by an older version cannot smuggle in a bad job.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from gpuherd.ids import JobName
from gpuherd.spec.model import JobSpec

_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")  # a config name's rule
_LATEST = 253402300799.0  # 9999-12-31T23:59:59Z: later times cannot be formatted


class SubmissionError(ValueError):
    """A submission that cannot be queued; `field` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True, kw_only=True)
class Submission:
    job: JobName  # a config job's name, or an ad hoc job's label
    adhoc: JobSpec | None = None  # the job itself when it is not in the config
    not_before: float | None = None  # unix time
    scheduled_for: float | None = None  # the cron fire time it runs for
    key: str | None = None  # idempotency key: the same key is the same job
    owner_uid: int | None = None  # who submitted it over the unix socket (SO_PEERCRED)

    def __post_init__(self) -> None:
        if not _LABEL.match(self.job):  # it reaches terminals through `jobs` and `events`
            raise SubmissionError(
                "name", "use letters, digits, '.', '_' or '-' (at most 63), starting with one"
            )
        if self.not_before is not None and not (
            math.isfinite(self.not_before) and 0 <= self.not_before <= _LATEST
        ):
            raise SubmissionError("not_before", "must be a unix time between 1970 and 9999")
        if self.key is not None and not (0 < len(self.key) <= 200 and self.key.isprintable()):
            raise SubmissionError("key", "must be 1 to 200 printable characters")

    def to_json(self) -> str:
        data: dict[str, Any] = {"job": self.job}
        if self.adhoc is not None:
            data["adhoc"] = self.adhoc.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        if self.not_before is not None:
            data["not_before"] = self.not_before
        if self.scheduled_for is not None:
            data["scheduled_for"] = self.scheduled_for
        if self.owner_uid is not None:
            data["owner_uid"] = self.owner_uid
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, name: str, key: str | None = None) -> Submission:
        data = json.loads(text)
        adhoc = data.get("adhoc")
        return cls(
            job=JobName(data.get("job", name)),
            adhoc=None if adhoc is None else JobSpec.model_validate(adhoc),
            not_before=data.get("not_before"),
            scheduled_for=data.get("scheduled_for"),
            key=key,
            # Records written before owners were kept have none; a mangled one counts as none.
            owner_uid=owner if isinstance(owner := data.get("owner_uid"), int) else None,
        )
