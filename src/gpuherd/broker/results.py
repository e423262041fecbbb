"""Result records: one JSON document per ended job, in the journal and in STATE/results/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gpuherd.broker.records import JobRow, ReleaseRow


def _span(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else end - start


def record(row: JobRow, releases: list[ReleaseRow], extra: dict[str, Any]) -> dict[str, Any]:
    """Times, outcome, the job's own facts (`extra`: exit code, checks, peak VRAM), and which
    tenants were released, by what, and how long each was down."""
    return {
        "id": row.id,
        "name": row.name,
        "outcome": str(row.state),
        "reason": row.reason,
        "submitted_at": row.submitted_at,
        "started_at": row.started_at,
        "ended_at": row.ended_at,
        "ran_s": _span(row.started_at, row.ended_at),
        **extra,
        "released": [
            {
                "tenant": r.tenant,
                "method": r.method,
                "state": str(r.state),
                "released_at": r.released_at,
                "restored_at": r.restored_at,
                "down_s": _span(r.released_at, r.restored_at),
            }
            for r in releases
        ],
    }


def write(state_dir: Path, result: dict[str, Any]) -> None:
    results = state_dir / "results"
    results.mkdir(mode=0o700, exist_ok=True)
    tmp = results / f".{result['id']}.json.tmp"
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(results / f"{result['id']}.json")  # never a half-written record
