"""The broker API in-process: submit and follow a job, errors, metrics, OpenAPI, tokens."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from gpuherd.api.app import create_app
from gpuherd.broker.service import Broker


def follow(
    client: TestClient, job_id: str, until: set[str], timeout: float = 30.0
) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data: dict[str, object] = client.get(f"/v1/jobs/{job_id}").json()
        if data["state"] in until:
            return data
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {until}")


def test_submit_and_follow(broker: Broker) -> None:
    client = TestClient(create_app(broker))
    created = client.post("/v1/jobs", json={"name": "quick"})
    assert created.status_code == 201
    job = follow(client, created.json()["id"], {"succeeded", "failed"})
    assert (job["state"], job["exit_code"]) == ("succeeded", 0)
    assert [j["id"] for j in client.get("/v1/jobs", params={"all": True}).json()] == [job["id"]]
    assert client.get("/v1/jobs").json() == []
    kinds = [e["kind"] for e in client.get("/v1/events").json()]
    assert kinds[0] == "submitted"
    assert kinds[-1] == "job_succeeded"
    metrics = client.get("/metrics").text
    assert 'gpuherd_job_runs_total{outcome="succeeded"} 1.0' in metrics
    assert "gpuherd_gpu_memory_bytes" in metrics
    status = client.get("/v1/status").json()
    assert status["gpus"][0]["memory"]["total"] == 12 * 1024**3


def test_field_errors_and_openapi(broker: Broker) -> None:
    client = TestClient(create_app(broker))
    unknown = client.post("/v1/jobs", json={"name": "nope"})
    assert unknown.status_code == 404
    assert unknown.json()["detail"][0]["loc"] == ["body", "name"]
    bad = client.post("/v1/jobs", json={})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body"]
    assert "give name (a job in the config) or adhoc" in bad.json()["detail"][0]["msg"]
    # This broker's config does not set allow_adhoc: a command is refused, not run.
    adhoc = {"gpu": "gpu0", "vram": "1GiB", "command": ["touch", "/tmp/x"]}
    refused = client.post("/v1/jobs", json={"adhoc": adhoc})
    assert refused.status_code == 403
    assert refused.json()["detail"][0]["loc"] == ["body", "adhoc"]
    assert "broker.allow_adhoc: true" in refused.json()["detail"][0]["msg"]
    extra = client.post("/v1/jobs", json={"adhoc": {**adhoc, "shell": True}})
    assert extra.status_code == 422
    assert extra.json()["detail"][0]["loc"] == ["body", "adhoc", "shell"]
    assert client.get("/v1/jobs/none").status_code == 404
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/cancel",
        "/v1/status",
        "/v1/events",
        "/metrics",
    } <= set(paths)


def test_not_before_holds_a_job_back(broker: Broker) -> None:
    client = TestClient(create_app(broker))
    later = client.post("/v1/jobs", json={"name": "quick", "not_before": time.time() + 3600})
    assert later.status_code == 201
    time.sleep(0.3)  # several broker steps
    job = client.get(f"/v1/jobs/{later.json()['id']}").json()
    assert job["state"] == "queued"
    assert job["reason"].startswith("not before ")
    soon = client.post("/v1/jobs", json={"name": "quick", "not_before": time.time() + 0.5})
    assert follow(client, soon.json()["id"], {"succeeded"})["state"] == "succeeded"


def test_cancel_a_running_job(broker: Broker) -> None:
    client = TestClient(create_app(broker))
    job_id = client.post("/v1/jobs", json={"name": "slow"}).json()["id"]
    follow(client, job_id, {"running"})
    assert client.post(f"/v1/jobs/{job_id}/cancel").json() == {"state": "cancelled"}
    assert client.get(f"/v1/jobs/{job_id}").json()["state"] == "cancelled"


def test_token_required_when_given(broker: Broker) -> None:
    client = TestClient(create_app(broker, token="s3cret"))
    assert client.get("/v1/status").status_code == 401
    assert client.get("/v1/status", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/v1/status", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    # The token alone, without the scheme, is not accepted (it was before).
    assert client.get("/v1/status", headers={"Authorization": "s3cret"}).status_code == 401


def test_a_huge_body_is_refused_before_it_is_read(broker: Broker) -> None:
    client = TestClient(create_app(broker))
    big = client.post("/v1/jobs", content=b"{" + b" " * (2 << 20) + b"}")
    assert big.status_code == 413
    assert client.get("/v1/jobs", params={"all": True}).json() == []


def test_submit_never_waits_for_a_step_in_progress(broker: Broker) -> None:
    """Before, a submission took the engine lock, which a step holds through a release (up to
    minutes): `gpuherd submit` timed out while its job landed later, and a retry queued it
    twice. Now it is answered while the release is still under way, and a retry with the same
    Idempotency-Key returns the same job."""
    client = TestClient(create_app(broker))
    big = client.post("/v1/jobs", json={"name": "big"}).json()["id"]
    follow(client, big, {"releasing"})
    key = {"Idempotency-Key": "render-2026-12-01"}
    first = client.post("/v1/jobs", json={"name": "quick"}, headers=key)
    assert first.status_code == 201
    assert client.get(f"/v1/jobs/{big}").json()["state"] == "releasing"  # still in the release
    again = client.post("/v1/jobs", json={"name": "quick"}, headers=key)
    assert again.json()["id"] == first.json()["id"]
    assert client.get(f"/v1/jobs/{big}").json()["state"] == "releasing"
    status = client.get("/v1/status").json()  # reads answer during the step too
    assert [j["id"] for j in status["jobs"]] == [big, first.json()["id"]]
    assert follow(client, big, {"failed"})["reason"] == "could not release slowpoke"
    assert follow(client, first.json()["id"], {"succeeded"})["state"] == "succeeded"
    assert len(client.get("/v1/jobs", params={"all": True}).json()) == 2
