"""The API's request bodies: one submission model with explicit fields, turned into the
broker's `Submission` in one place."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gpuherd.broker.submission import Submission
from gpuherd.ids import JobName
from gpuherd.spec.model import JobSpec


class AdhocJob(BaseModel):
    """A job that is not in the config (only with `broker.allow_adhoc: true`). The fields and
    their units are a config job entry's."""

    model_config = ConfigDict(extra="forbid")
    gpu: str = Field(description="A GPU name from the config.")
    vram: str | int = Field(description='VRAM it needs: "6GiB", a fraction "0.5", or bytes.')
    command: list[str] = Field(min_length=1, description="argv; run without a shell.")
    priority: int = 0
    timeout: str | float = Field("1h", description='"30m", "2h" or seconds.')
    grace: str | float = Field("30s", description="From SIGTERM to SIGKILL on timeout/cancel.")
    workdir: str | None = None
    env: dict[str, str] = Field(default_factory=dict)


class SubmitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(
        None,
        min_length=1,
        description="A job declared in the broker's config; for an ad hoc job, its label.",
    )
    adhoc: AdhocJob | None = Field(None, description="Run this instead of a config job.")
    not_before: float | None = Field(None, description="Unix time before which it must not start.")

    @model_validator(mode="after")
    def _named_or_adhoc(self) -> SubmitRequest:
        if self.name is None and self.adhoc is None:
            raise ValueError("give name (a job in the config) or adhoc (a command to run)")
        return self

    def submission(self, *, key: str | None) -> Submission:
        """Raises pydantic's ValidationError for bad ad hoc fields, SubmissionError else."""
        adhoc = None
        if self.adhoc is not None:
            adhoc = JobSpec.model_validate(self.adhoc.model_dump(exclude_defaults=True))
        return Submission(
            job=JobName(self.name or "adhoc"), adhoc=adhoc, not_before=self.not_before, key=key
        )


class Created(BaseModel):
    """The answer to a submission (documented in the OpenAPI schema)."""

    id: str = Field(description="The job's id: its record, logs and result go by it.")
