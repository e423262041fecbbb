"""Submissions under load: many in flight at once are written in batches (one transaction and
fsync each), every one is acknowledged only once durable, held exactly once, and a key sent
many times at once still names one job."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from gpuherd.api.app import create_app
from gpuherd.broker.journal import Journal
from gpuherd.broker.service import Broker


async def _post_all(
    broker: Broker, bodies: list[tuple[dict[str, object], dict[str, str]]]
) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=create_app(broker))
    async with httpx.AsyncClient(transport=transport, base_url="http://gpuherd") as client:
        return await asyncio.gather(
            *(client.post("/v1/jobs", json=body, headers=headers) for body, headers in bodies)
        )


def test_300_at_once_are_batched_acknowledged_durable_and_held_once(
    broker: Broker, tmp_path: Path
) -> None:
    later = time.time() + 3600  # queued, not started: the journal alone is under test
    bodies: list[tuple[dict[str, object], dict[str, str]]] = [
        ({"name": "quick", "not_before": later}, {}) for _ in range(300)
    ]
    answers = asyncio.run(_post_all(broker, bodies))
    assert {a.status_code for a in answers} == {201}
    ids = [a.json()["id"] for a in answers]
    assert len(set(ids)) == 300
    assert 1 <= broker.intake.batches < 300  # grouped: fewer transactions than submissions
    # Durable when acknowledged: a fresh connection to the file sees every one.
    fresh = Journal(tmp_path / "journal.db")
    try:
        assert {j.id for j in fresh.jobs()} == set(ids)
    finally:
        fresh.close()


def test_one_key_sent_50_times_at_once_is_one_job(broker: Broker) -> None:
    later = time.time() + 3600
    key = {"Idempotency-Key": "nightly-2026-12-02"}
    answers = asyncio.run(_post_all(broker, [({"name": "quick", "not_before": later}, key)] * 50))
    assert {a.status_code for a in answers} == {201}
    (only,) = {a.json()["id"] for a in answers}
    assert [j.id for j in broker.engine.journal.jobs()] == [only]


def test_a_bad_submission_in_a_burst_fails_alone(broker: Broker) -> None:
    later = time.time() + 3600
    bodies: list[tuple[dict[str, object], dict[str, str]]] = [
        ({"name": "quick", "not_before": later}, {}) for _ in range(20)
    ]
    bodies.insert(7, ({"name": "no-such-job"}, {}))
    answers = asyncio.run(_post_all(broker, bodies))
    assert [a.status_code for a in answers].count(201) == 20
    assert answers[7].status_code == 404
    assert answers[7].json()["detail"][0]["loc"] == ["body", "name"]
