"""Doctor results: one record per check, a verdict, and the plain-data form for --format json."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["ok", "warn", "fail", "skip"]
Verdict = Literal["ready", "degraded", "not-ready"]
Mode = Literal["host", "container"]
SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class Check:
    id: str
    status: Status
    message: str
    fix: str | None = None
    evidence: Any = None


@dataclass(frozen=True, slots=True)
class Report:
    mode: Mode
    checks: tuple[Check, ...]
    summary: str  # e.g. "1x NVIDIA GeForce RTX 3080 Ti (12 GiB), driver 550.54, CUDA 12.4"
    mode_evidence: list[str] = field(default_factory=list)
    runtimes: tuple[str, ...] = ()  # host engines with an nvidia runtime registered

    @property
    def brief(self) -> str:
        """One line for a status page: the headline, the runtime wiring, the first problem."""
        if self.verdict == "not-ready":
            first = next(c for c in self.checks if c.status == "fail")
            return f"{self.headline}: {first.id}: {first.message}"
        line = f"GPU ready: {self.summary}"
        if self.mode == "host":
            line += (
                f", runtime nvidia ({', '.join(self.runtimes)})"
                if self.runtimes
                else ", no nvidia container runtime wired"
            )
        warns = sum(1 for c in self.checks if c.status == "warn")
        return line + (f"; {warns} warning{'s' if warns != 1 else ''}" if warns else "")

    @property
    def problems(self) -> int:
        return sum(1 for c in self.checks if c.status == "fail")

    @property
    def verdict(self) -> Verdict:
        if self.problems:
            return "not-ready"
        if any(c.status == "warn" for c in self.checks):
            return "degraded"
        return "ready"

    @property
    def headline(self) -> str:
        if self.verdict == "not-ready":
            return f"GPU NOT ready: {self.problems} problem{'s' if self.problems != 1 else ''}"
        warns = sum(1 for c in self.checks if c.status == "warn")
        tail = f" ({warns} warning{'s' if warns != 1 else ''})" if warns else ""
        return f"GPU ready: {self.summary}{tail}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": SCHEMA_VERSION,
            "mode": self.mode,
            "mode_evidence": self.mode_evidence,
            "verdict": self.verdict,
            "summary": self.headline,
            "runtimes": list(self.runtimes),
            "checks": [
                {
                    "id": c.id,
                    "status": c.status,
                    "message": c.message,
                    "fix": c.fix,
                    "evidence": c.evidence,
                }
                for c in self.checks
            ],
        }
