"""The Job controller: suspend and resume, completion, backoffLimit, activeDeadlineSeconds and
ttlSecondsAfterFinished, with the conditions the real controller writes."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from kubernetes.client import ApiException

from tests.simcluster.conftest import Kube, wait_for


def job(name: str, code: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"gpuherd.io/queue": "render"}},
        "spec": {
            **spec,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "image": "example/render:1",
                            "command": [sys.executable, "-c", code],
                        }
                    ],
                }
            },
        },
    }


def _conditions(kube: Kube, name: str) -> dict[str, tuple[str, str]]:
    status = kube.batch.read_namespaced_job(name, "default").status
    return {c.type: (c.status, c.reason) for c in status.conditions or []}


def test_suspended_job_runs_when_unsuspended_and_completes(kube: Kube) -> None:
    kube.batch.create_namespaced_job(
        "default", job("render", "print('frame 1 done')", suspend=True)
    )
    wait_for(
        lambda: _conditions(kube, "render").get("Suspended") == ("True", "JobSuspended"),
        what="Suspended condition",
    )
    assert kube.pods("job-name=render") == []
    got = kube.batch.read_namespaced_job("render", "default")
    assert got.status.start_time is None
    assert got.spec.template.metadata.labels["batch.kubernetes.io/job-name"] == "render"
    kube.batch.patch_namespaced_job("render", "default", {"spec": {"suspend": False}})
    wait_for(
        lambda: _conditions(kube, "render").get("Complete") == ("True", "CompletionsReached"),
        what="Complete condition",
    )
    conditions = _conditions(kube, "render")
    assert conditions["Suspended"] == ("False", "JobResumed")
    assert conditions["SuccessCriteriaMet"] == ("True", "CompletionsReached")
    status = kube.batch.read_namespaced_job("render", "default").status
    assert status.succeeded == 1
    assert status.completion_time is not None
    [pod] = kube.pods("job-name=render")
    assert pod.status.phase == "Succeeded"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (0, "Completed")
    assert kube.core.read_namespaced_pod_log(pod.metadata.name, "default") == "frame 1 done\n"


def test_failing_job_stops_at_the_backoff_limit(kube: Kube) -> None:
    kube.batch.create_namespaced_job("default", job("bad", "raise SystemExit(3)", backoffLimit=1))
    wait_for(
        lambda: _conditions(kube, "bad").get("Failed") == ("True", "BackoffLimitExceeded"),
        what="Failed condition",
    )
    pods = kube.pods("job-name=bad")
    assert len(pods) == 2  # the first try and one retry
    for pod in pods:
        assert pod.status.phase == "Failed"
        terminated = pod.status.container_statuses[0].state.terminated
        assert (terminated.exit_code, terminated.reason) == (3, "Error")
    assert kube.batch.read_namespaced_job("bad", "default").status.failed == 2


def test_active_deadline_ends_a_running_job(kube: Kube) -> None:
    kube.batch.create_namespaced_job(
        "default", job("slow", "import time; time.sleep(60)", activeDeadlineSeconds=1)
    )
    wait_for(
        lambda: _conditions(kube, "slow").get("Failed") == ("True", "DeadlineExceeded"),
        timeout=30,
        what="DeadlineExceeded",
    )
    wait_for(
        lambda: not [p for p in kube.pods("job-name=slow") if p.status.phase == "Running"],
        what="the running pod ended",
    )


def test_ttl_after_finished_deletes_the_job_and_its_pods(kube: Kube) -> None:
    kube.batch.create_namespaced_job("default", job("quick", "pass", ttlSecondsAfterFinished=1))
    wait_for(
        lambda: not kube.batch.list_namespaced_job("default").items,
        timeout=30,
        what="job deleted by its ttl",
    )
    wait_for(lambda: not kube.pods("job-name=quick"), what="its pods collected")


def test_a_suspended_job_can_be_pinned_to_a_node_until_it_starts(kube: Kube) -> None:
    kube.batch.create_namespaced_job("default", job("pin", "pass", suspend=True))
    pin = {
        "spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/hostname": "k3s-gpu-02"}}}}
    }
    kube.batch.patch_namespaced_job("pin", "default", pin)
    with pytest.raises(ApiException) as exc:  # the command is not a scheduling directive
        kube.batch.patch_namespaced_job(
            "pin",
            "default",
            {
                "spec": {
                    "template": {"spec": {"containers": [{"name": "main", "command": ["true"]}]}}
                }
            },
        )
    assert exc.value.status == 422
    assert "spec.template" in json.loads(exc.value.body or "{}")["message"]
    kube.batch.patch_namespaced_job("pin", "default", {"spec": {"suspend": False}})
    wait_for(lambda: _conditions(kube, "pin").get("Complete"), what="complete")
    [pod] = kube.pods("job-name=pin")
    assert pod.spec.node_name == "k3s-gpu-02"
    with pytest.raises(ApiException) as exc:  # it has started: the template is fixed now
        kube.batch.patch_namespaced_job(
            "pin",
            "default",
            {
                "spec": {
                    "template": {"spec": {"nodeSelector": {"kubernetes.io/hostname": "k3s-cp-01"}}}
                }
            },
        )
    assert exc.value.status == 422
    body = json.loads(exc.value.body or "{}")
    assert body["message"].startswith('Job.batch "pin" is invalid: spec.template: Invalid value')
    assert body["message"].endswith("field is immutable")
