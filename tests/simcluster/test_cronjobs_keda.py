"""CronJobs creating Jobs on schedule, and the KEDA stand-in: ScaledObjects with their HPA and
the paused-replicas annotation."""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any

import httpx
import pytest
from kubernetes import client
from kubernetes.client import ApiException

from gpuherd.simcluster.cronjobs import due
from tests.simcluster.conftest import Kube, deployment, wait_for

UTC = dt.UTC


def _cronjob(schedule: str, created: str, last: str | None = None) -> dict[str, Any]:
    status = {"lastScheduleTime": last} if last else {}
    return {
        "metadata": {"name": "render", "creationTimestamp": created},
        "spec": {"schedule": schedule},
        "status": status,
    }


def test_due_is_the_latest_missed_time_only() -> None:
    cj = _cronjob("0 2 * * *", "2026-11-28T12:00:00Z")
    now = dt.datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    assert due(cj, now) == dt.datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
    ran = _cronjob("0 2 * * *", "2026-11-28T12:00:00Z", last="2026-12-01T02:00:00Z")
    assert due(ran, now) is None
    zoned = _cronjob("0 2 * * *", "2026-11-30T12:00:00Z")
    zoned["spec"]["timeZone"] = "Europe/Berlin"  # 02:00 in Berlin is 01:00 UTC in winter
    assert due(zoned, dt.datetime(2026, 12, 1, 1, 30, tzinfo=UTC)) == dt.datetime(
        2026, 12, 1, 1, 0, tzinfo=UTC
    )


def test_cronjob_creates_a_suspended_job_from_its_template(kube: Kube) -> None:
    batch: Any = kube.batch
    batch.create_namespaced_cron_job(
        "default",
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "nightly"},
            "spec": {
                "schedule": "* * * * *",
                "jobTemplate": {
                    "metadata": {
                        "labels": {"gpuherd.io/queue": "render"},
                        "annotations": {"gpuherd.io/vram": "6Gi"},
                    },
                    "spec": {
                        "suspend": True,
                        "template": {
                            "spec": {
                                "restartPolicy": "Never",
                                "containers": [
                                    {
                                        "name": "render",
                                        "image": "x",
                                        "command": [sys.executable, "-c", "pass"],
                                    }
                                ],
                            }
                        },
                    },
                },
            },
        },
    )
    # Pretend the last run was two minutes ago: the controller runs the missed minute now.
    past = (dt.datetime.now(UTC) - dt.timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:00Z")
    batch.patch_namespaced_cron_job_status(
        "nightly", "default", {"status": {"lastScheduleTime": past}}
    )
    job = wait_for(lambda: batch.list_namespaced_job("default").items, what="a Job")[0]
    assert job.metadata.name.startswith("nightly-")
    assert job.metadata.owner_references[0].kind == "CronJob"
    assert job.metadata.labels["gpuherd.io/queue"] == "render"
    assert job.metadata.annotations["gpuherd.io/vram"] == "6Gi"
    assert job.spec.suspend is True
    cj = wait_for(
        lambda: [
            c for c in [batch.read_namespaced_cron_job("nightly", "default")] if c.status.active
        ],
        what="active in status",
    )[0]
    assert cj.status.active[0].name == job.metadata.name
    assert kube.pods("job-name=" + job.metadata.name) == []  # suspended: no pods


def test_cronjob_with_a_bad_schedule_is_422(kube: Kube) -> None:
    reply = httpx.post(
        kube.cluster.url + "/apis/batch/v1/namespaces/default/cronjobs",
        json={
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "x"},
            "spec": {
                "schedule": "every night",
                "jobTemplate": {
                    "spec": {
                        "template": {
                            "spec": {
                                "restartPolicy": "Never",
                                "containers": [{"name": "a", "image": "b"}],
                            }
                        }
                    }
                },
            },
        },
    )
    assert reply.status_code == 422
    assert reply.json()["details"]["causes"][0]["field"] == "spec.schedule"


def test_keda_pause_scales_the_target_and_resume_restores(kube: Kube) -> None:
    custom: Any = client.CustomObjectsApi(kube.api_client)
    kube.apps.create_namespaced_deployment("default", deployment("ollama", ["sleep", "60"]))
    kube.running("app=ollama", 1)
    custom.create_namespaced_custom_object(
        "keda.sh",
        "v1alpha1",
        "default",
        "scaledobjects",
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {"name": "ollama"},
            "spec": {
                "scaleTargetRef": {"name": "ollama"},
                "minReplicaCount": 1,
                "maxReplicaCount": 2,
                "triggers": [{"type": "cron", "metadata": {}}],
            },
        },
    )
    hpa: Any = wait_for(
        lambda: (
            client.AutoscalingV2Api(kube.api_client)
            .list_namespaced_horizontal_pod_autoscaler("default")
            .items
        ),
        what="KEDA's HPA",
    )[0]
    assert hpa.metadata.name == "keda-hpa-ollama"
    assert hpa.metadata.owner_references[0].kind == "ScaledObject"
    assert hpa.spec.scale_target_ref.name == "ollama"
    custom.patch_namespaced_custom_object(
        "keda.sh",
        "v1alpha1",
        "default",
        "scaledobjects",
        "ollama",
        {"metadata": {"annotations": {"autoscaling.keda.sh/paused-replicas": "0"}}},
    )
    wait_for(lambda: not kube.pods("app=ollama"), what="scaled to 0 by the pause")
    so = custom.get_namespaced_custom_object(
        "keda.sh", "v1alpha1", "default", "scaledobjects", "ollama"
    )
    assert so["status"]["pausedReplicaCount"] == 0
    custom.patch_namespaced_custom_object(
        "keda.sh",
        "v1alpha1",
        "default",
        "scaledobjects",
        "ollama",
        {"metadata": {"annotations": {"autoscaling.keda.sh/paused-replicas": None}}},
    )
    kube.running("app=ollama", 1)
    reply = httpx.patch(
        kube.cluster.url + "/apis/keda.sh/v1alpha1/namespaces/default/scaledobjects/ollama",
        headers={"Content-Type": "application/strategic-merge-patch+json"},
        content="{}",
    )
    assert reply.status_code == 415  # custom resources take no strategic merge
    custom.delete_namespaced_custom_object(
        "keda.sh", "v1alpha1", "default", "scaledobjects", "ollama"
    )
    wait_for(
        lambda: (
            not client.AutoscalingV2Api(kube.api_client)
            .list_namespaced_horizontal_pod_autoscaler("default")
            .items
        ),
        what="HPA collected",
    )


def test_an_unknown_custom_resource_is_404(kube: Kube) -> None:
    custom: Any = client.CustomObjectsApi(kube.api_client)
    with pytest.raises(ApiException) as exc:
        custom.list_namespaced_custom_object("argoproj.io", "v1alpha1", "default", "applications")
    assert exc.value.status == 404
