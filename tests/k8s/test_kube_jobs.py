"""Kubernetes Jobs end to end with `gpuherd serve --kubernetes` on the simulated cluster: config
jobs with a Job template submitted with `gpuherd submit`, a CronJob's Jobs, timeouts (the Job's
activeDeadlineSeconds and the gpuherd timeout), `not_on_cpu`, the Job's ttl taken over until the
result is recorded, a Job deleted under the broker, and the tenants' workloads in `status`."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiException

from gpuherd.broker.kubejob import KUBE_JOB, KubeJobLauncher
from gpuherd.broker.launcher import Exited
from gpuherd.broker.records import Handle
from gpuherd.ids import GpuName, JobId, JobName
from gpuherd.k8s import leases
from gpuherd.k8s.client import KubeClient
from gpuherd.k8s.pods import Cache, PodCache
from gpuherd.k8s.session import Session
from gpuherd.spec import SpecError, parse_config
from gpuherd.spec.model import GpuSpec, JobSpec
from tests.k8s.broker import broker, cli, hold_for, one_node, queued_job, tenant, used
from tests.simcluster.conftest import Kube, wait_for

GIB = 1024**3
CP = "k3s-cp-01"


@pytest.fixture
def kube(tmp_path: Path, sim_dir: Path) -> Iterator[Kube]:
    yield from one_node(tmp_path, sim_dir)


def _deploy(kube: Kube, name: str) -> Any:
    return kube.apps.read_namespaced_deployment(name, "default")


def _tenants(kube: Kube, sim_dir: Path) -> None:
    """ollama (5 GiB, priority 10) and tts (4 GiB, priority 1) on the node: 9 of 12 GiB."""
    short = {"gpuherd.io/cooldown": "1s"}
    kube.apps.create_namespaced_deployment("default", tenant("ollama", "5GiB", 10, CP, **short))
    kube.apps.create_namespaced_deployment("default", tenant("tts", "4GiB", 1, CP, **short))
    kube.running("app=ollama", 1)
    kube.running("app=tts", 1)
    wait_for(lambda: used(sim_dir) == 9 * GIB, what="9 GiB held by the tenants")


def _restored(kube: Kube) -> bool:
    d = _deploy(kube, "tts")
    notes = d.metadata.annotations or {}
    return bool(
        d.status.ready_replicas == 1 and not any(k.startswith("gpuherd.io/re") for k in notes)
    )


def _config(tmp_path: Path, job: str) -> Path:
    path = tmp_path / "gpuherd.yaml"
    path.write_text("version: 1\njobs:\n" + textwrap.indent(textwrap.dedent(job), "  "))
    return path


def _template(command: list[str], **spec: Any) -> str:
    """A Job template (its spec) as YAML flow text, the pod asking for the node's GPU."""
    container = {
        "name": "render",
        "image": "example/render:1",
        "command": command,
        "resources": {"limits": {"nvidia.com/gpu": "1"}},
    }
    body = {
        "backoffLimit": 0,
        **spec,
        "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
    }
    return json.dumps(body)


def _submit(state: Path, name: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "gpuherd", "submit", name, "--socket", str(state / "api.sock")],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def _record(state: Path, job_id: str, timeout: float = 40) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        job = next((j for j in cli(state, "jobs", "--all") if j["id"] == job_id), None)
        return job if job and job["state"] in ("succeeded", "failed", "cancelled") else None

    return wait_for(ended, timeout=timeout, what=f"job {job_id} recorded")


def _jobs_named(kube: Kube, prefix: str) -> list[Any]:
    return [j for j in kube.batch.list_namespaced_job("default").items if j.metadata.name.startswith(prefix)]  # fmt: skip


# --- the config ---------------------------------------------------------------------------


def test_a_job_template_is_checked_when_the_config_loads() -> None:
    spec_only = """\
        version: 1
        jobs:
          render:
            vram: 6GiB
            kubernetes:
              template:
                template:
                  spec:
                    restartPolicy: Never
                    containers: [{name: render, image: example/render:1, comand: [x]}]
        """
    with pytest.raises(SpecError) as exc:
        parse_config(textwrap.dedent(spec_only), source="g.yaml")
    assert str(exc.value) == (
        "g.yaml:7:9: jobs.render.kubernetes.template: not a valid batch/v1 Job: "
        "template.spec.containers[0]: Additional properties are not allowed ('comand' was "
        "unexpected)"
    )
    pod_kind = "version: 1\njobs:\n  r:\n    vram: 1GiB\n    kubernetes: {template: {apiVersion: v1, kind: Pod}}\n"
    with pytest.raises(SpecError, match=r"g.yaml:5:28: jobs.r.kubernetes.template: expected a batch/v1 Job, got v1/Pod"):  # fmt: skip
        parse_config(pod_kind, source="g.yaml")
    always = "version: 1\njobs:\n  r:\n    vram: 1GiB\n    kubernetes:\n      template: {template: {spec: {containers: [{name: a, image: b}]}}}\n"
    with pytest.raises(SpecError, match=r"restartPolicy: supported values: \"OnFailure\", \"Never\""):  # fmt: skip
        parse_config(always, source="g.yaml")
    both = "version: 1\njobs:\n  r:\n    vram: 1GiB\n    command: [x]\n    kubernetes: {template: {template: {spec: {restartPolicy: Never, containers: [{name: a, image: b}]}}}}\n"
    with pytest.raises(SpecError, match="'command' and 'kubernetes' exclude each other"):
        parse_config(both, source="g.yaml")
    whole = """\
        version: 1
        jobs:
          render:
            vram: 6GiB
            kubernetes:
              template:
                apiVersion: batch/v1
                kind: Job
                metadata: {name: nightly, labels: {team: media}}
                spec:
                  template:
                    spec:
                      restartPolicy: Never
                      containers: [{name: render, image: example/render:1}]
        """
    job = parse_config(textwrap.dedent(whole), source="g.yaml").jobs[JobName("render")]
    assert job.command is None
    assert job.kubernetes is not None
    assert job.kubernetes.template["metadata"]["labels"] == {"team": "media"}


# --- config jobs with a template ----------------------------------------------------------


def test_submit_of_a_template_job_creates_it_suspended_and_runs_it_like_a_queued_one(
    kube: Kube, sim_dir: Path, tmp_path: Path
) -> None:
    _tenants(kube, sim_dir)
    template = _template(hold_for("6GiB", "render", "2s"), ttlSecondsAfterFinished=4)
    config = _config(
        tmp_path,
        f"""\
        render:
          vram: 6GiB
          priority: 50
          success: [{{not_on_cpu: 20s}}]
          kubernetes:
            template: {template}
        """,
    )
    state = tmp_path / "state"
    with broker(kube.cluster, sim_dir, CP, 0, state, config=config):
        job_id = _submit(state, "render")
        [job] = wait_for(lambda: _jobs_named(kube, "render-"), timeout=30, what="the Job")
        assert job.metadata.name == f"render-{job_id}"
        assert job.metadata.labels["gpuherd.io/queue"] == "render"
        notes = job.metadata.annotations
        assert (notes["gpuherd.io/job-id"], notes["gpuherd.io/created-by"]) == (job_id, CP)
        wait_for(lambda: _deploy(kube, "tts").spec.replicas == 0, timeout=30, what="tts released")
        record = _record(state, job_id)
        ran = kube.batch.read_namespaced_job(f"render-{job_id}", "default")
        assert record["state"] == "succeeded", record
        # It was created suspended, pinned and resumed; its ttl is the broker's until recorded.
        conditions = {c.type: (c.status, c.reason) for c in ran.status.conditions}
        assert conditions["Suspended"] == ("False", "JobResumed")
        assert ran.spec.template.spec.node_selector == {"kubernetes.io/hostname": CP}
        assert ran.spec.ttl_seconds_after_finished is None
        assert ran.metadata.annotations["gpuherd.io/ttl-seconds-after-finished"] == "4"
        result = record["result"]
        assert result["exit_code"] == 0
        assert [(c["check"], c["ok"]) for c in result["checks"]] == [
            ("exit_code 0", True),
            ("not_on_cpu", True),
        ]
        assert result["peak_vram_bytes"] == 6 * GIB  # the pod's process, seen on the GPU
        assert [r["tenant"] for r in result["released"]] == ["tts"]
        log = subprocess.run(
            [sys.executable, "-m", "gpuherd", "logs", job_id, "--socket", str(state / "api.sock")],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip
        assert "render" in log
        assert "gpuherd: the pod log could not be read" not in log
        wait_for(
            lambda: _jobs_named(kube, "render-")[0].metadata.annotations.get("gpuherd.io/outcome"),
            what="the outcome on the Job",
        )
        wait_for(lambda: _restored(kube), timeout=30, what="tts back")
        wait_for(lambda: not _jobs_named(kube, "render-"), timeout=20, what="the Job's ttl")
    wait_for(lambda: used(sim_dir) == 9 * GIB, what="the tenants' memory back")


def test_a_template_job_whose_volume_is_on_another_node_fails_before_any_release(
    kube: Kube, sim_dir: Path, tmp_path: Path
) -> None:
    _tenants(kube, sim_dir)
    kube.core.create_persistent_volume(
        {
            "metadata": {"name": "pv-renders"},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "hostPath": {"path": "/var/lib/renders"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": ["k3s-gpu-02"]}
                ]}]}},
            },
        }
    )  # fmt: skip
    kube.core.create_namespaced_persistent_volume_claim(
        "default",
        {
            "metadata": {"name": "renders"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "volumeName": "pv-renders",
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    body = json.loads(_template(hold_for("6GiB", "render", "1s")))
    pod = body["template"]["spec"]
    pod["volumes"] = [{"name": "out", "persistentVolumeClaim": {"claimName": "renders"}}]
    config = _config(
        tmp_path,
        f"render:\n  vram: 6GiB\n  priority: 50\n  kubernetes:\n    template: {json.dumps(body)}\n",
    )
    state = tmp_path / "state"
    with broker(kube.cluster, sim_dir, CP, 0, state, config=config):
        job_id = _submit(state, "render")
        record = _record(state, job_id)
        assert record["state"] == "failed"
        assert (
            "claim renders is bound to a volume on k3s-gpu-02, not on k3s-cp-01" in record["reason"]
        )
        assert record["result"]["released"] == []
        assert _deploy(kube, "tts").spec.replicas == 1  # never touched
        # The Job never ran and never will: the broker removes it once the result is recorded.
        wait_for(lambda: not _jobs_named(kube, "render-"), timeout=20, what="the Job removed")


# --- CronJobs -----------------------------------------------------------------------------


def _cronjob(seconds: str) -> dict[str, Any]:
    job = queued_job("nightly", "6GiB", 50, seconds)
    job["spec"]["ttlSecondsAfterFinished"] = 0
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "nightly"},
        "spec": {
            "schedule": "0 3 * * *",
            "jobTemplate": {"metadata": job["metadata"], "spec": job["spec"]},
        },
    }


def _due_now(kube: Kube) -> None:
    """Make the CronJob's controller run its missed time now (a run "three hours ago")."""
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:00Z")
    kube.batch.patch_namespaced_cron_job_status("nightly", "default", {"status": {"lastScheduleTime": past}})  # fmt: skip


def test_each_job_a_cronjob_spawns_is_admitted_like_a_queued_job(
    kube: Kube, sim_dir: Path, tmp_path: Path
) -> None:
    _tenants(kube, sim_dir)
    kube.batch.create_namespaced_cron_job("default", _cronjob("1s"))
    state = tmp_path / "state"
    with broker(kube.cluster, sim_dir, CP, 0, state):
        runs: list[dict[str, Any]] = []
        for _ in range(2):
            _due_now(kube)

            def recorded(before: int = len(runs)) -> list[dict[str, Any]]:
                done = [j for j in cli(state, "jobs", "--all") if j["state"] == "succeeded"]
                return done if len(done) > before else []

            runs = wait_for(recorded, timeout=40, what="a spawned Job recorded")
            # Each run needed a tenant's memory (tts, or ollama while tts cools down) and gave it back.
            released = runs[-1]["result"]["released"]
            assert [r["state"] for r in released] == ["restored"], released
            wait_for(lambda: _restored(kube), timeout=30, what="tts back")
            wait_for(lambda: used(sim_dir) == 9 * GIB, timeout=30, what="both tenants back")
            # ttlSecondsAfterFinished 0: gone once recorded, so the next run may take its name.
            wait_for(lambda: not _jobs_named(kube, "nightly-"), timeout=20, what="the Job gone")
        assert [r["name"] for r in runs] == [runs[0]["name"]] * 2
        assert len({r["id"] for r in runs}) == 2


# --- timeouts and not_on_cpu ---------------------------------------------------------------


def test_a_jobs_active_deadline_ends_it_as_a_timeout_and_the_tenants_come_back(
    kube: Kube, sim_dir: Path, tmp_path: Path
) -> None:
    _tenants(kube, sim_dir)
    # The Job's own deadline (3 s), far below the gpuherd timeout: its controller ends it.
    template = _template(hold_for("6GiB", "render", "60s"), activeDeadlineSeconds=3)
    config = _config(tmp_path, f"render:\n  vram: 6GiB\n  priority: 50\n  timeout: 1h\n  kubernetes:\n    template: {template}\n")  # fmt: skip
    state = tmp_path / "state"
    with broker(kube.cluster, sim_dir, CP, 0, state, config=config):
        job_id = _submit(state, "render")
        record = _record(state, job_id)
        assert record["state"] == "failed"
        assert record["reason"].startswith(
            "timed out: the Job ran past its activeDeadlineSeconds (3s) and its controller "
            "failed it (DeadlineExceeded)"
        ), record["reason"]
        assert record["result"]["stopped_for"].startswith("timed out")
        wait_for(lambda: _restored(kube), timeout=30, what="tts back")
        job = kube.batch.read_namespaced_job(f"render-{job_id}", "default")
        assert [c.reason for c in job.status.conditions if c.type == "Failed"] == ["DeadlineExceeded"]  # fmt: skip
    wait_for(lambda: used(sim_dir) == 9 * GIB, what="the tenants' memory back")


def test_the_gpuherd_timeout_stops_a_job_for_good_and_its_tenants_come_back(
    kube: Kube, sim_dir: Path, tmp_path: Path
) -> None:
    _tenants(kube, sim_dir)
    template = _template(hold_for("6GiB", "render", "60s"))
    config = _config(tmp_path, f"render:\n  vram: 6GiB\n  priority: 50\n  timeout: 3s\n  grace: 2s\n  kubernetes:\n    template: {template}\n")  # fmt: skip
    state = tmp_path / "state"
    with broker(kube.cluster, sim_dir, CP, 0, state, config=config):
        job_id = _submit(state, "render")
        record = _record(state, job_id)
        assert record["state"] == "failed"
        assert record["reason"].startswith("timed out after "), record["reason"]
        assert "(timeout 3s)" in record["reason"]
        wait_for(lambda: _restored(kube), timeout=30, what="tts back")
        job = kube.batch.read_namespaced_job(f"render-{job_id}", "default")
        # Ended, not suspended: no broker admits it again.
        assert [c.type for c in job.status.conditions if c.status == "True"][-1] == "Failed"
        assert job.metadata.annotations["gpuherd.io/stopped"] == f"by gpuherd on {CP}"
        outcome = wait_for(
            lambda: _jobs_named(kube, "render-")[0].metadata.annotations.get("gpuherd.io/outcome"),
            what="the outcome on the Job",
        )
        assert outcome.startswith("failed: timed out")
        assert not kube.pods(f"job-name=render-{job_id}") or all(
            p.status.phase in ("Succeeded", "Failed")
            for p in kube.pods(f"job-name=render-{job_id}")
        )
    wait_for(lambda: used(sim_dir) == 9 * GIB, what="the tenants' memory back")


def test_a_queued_job_that_never_touches_the_gpu_is_stopped_by_not_on_cpu(
    kube: Kube, sim_dir: Path, tmp_path: Path
) -> None:
    _tenants(kube, sim_dir)
    body = queued_job("cpu-render", "6GiB", 50)
    body["metadata"]["annotations"]["gpuherd.io/not-on-cpu"] = "3s"
    container = body["spec"]["template"]["spec"]["containers"][0]
    container["command"] = [sys.executable, "-c", "import time; print('rendering on the CPU', flush=True); time.sleep(60)"]  # fmt: skip
    state = tmp_path / "state"
    with broker(kube.cluster, sim_dir, CP, 0, state):
        kube.batch.create_namespaced_job("default", body)
        [job] = wait_for(
            lambda: [j for j in cli(state, "jobs", "--all") if j["state"] == "failed"],
            timeout=40, what="the job failed",
        )  # fmt: skip
        assert job["reason"].startswith("not on the GPU after 3s: stopped early"), job["reason"]
        record = job["result"]
        [check] = [c for c in record["checks"] if c["check"] == "not_on_cpu"]
        assert not check["ok"]
        assert "no process of the job appeared on the GPU within 3s" in check["detail"]
        assert record["released"][0]["tenant"] == "tts"  # released for it, and given back
        wait_for(lambda: _restored(kube), timeout=30, what="tts back")
        log = subprocess.run(
            [sys.executable, "-m", "gpuherd", "logs", job["id"], "--socket", str(state / "api.sock")],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip
        assert "rendering on the CPU" in log


# --- the Job's end, and a Job deleted under the broker -------------------------------------


def test_a_queued_jobs_ttl_waits_for_its_result_even_at_zero(
    kube: Kube, sim_dir: Path, tmp_path: Path
) -> None:
    body = queued_job("render", "2GiB", 50, "1s")
    body["spec"]["ttlSecondsAfterFinished"] = 0
    state = tmp_path / "state"
    with broker(kube.cluster, sim_dir, CP, 0, state):
        kube.batch.create_namespaced_job("default", body)
        [job] = wait_for(
            lambda: [j for j in cli(state, "jobs", "--all") if j["state"] == "succeeded"],
            timeout=40, what="the job recorded",
        )  # fmt: skip
        assert job["exit_code"] == 0
        wait_for(lambda: not _jobs_named(kube, "render"), timeout=20, what="the Job deleted")
        log = (state / "logs" / f"{job['id']}.out").read_text()
        assert "render" in log
        assert "could not be read" not in log


def test_the_launcher_reads_how_a_job_ended_after_it_was_deleted(
    kube: Kube, sim_dir: Path, tmp_path: Path
) -> None:
    """Deleted right after it ended (someone else's ttl, a person): the watch's last state of
    the Job and its pods still give its outcome and exit code."""
    client = KubeClient.load(kube.cluster.kubeconfig)
    pods = PodCache(client, CP, watch_seconds=5)
    jobs = Cache(client, "jobs", labels="gpuherd.io/queue", watch_seconds=5)
    session = Session(client, CP, pods, kube.cluster.directory, jobs=jobs)
    try:
        for cache in (pods, jobs):
            cache.start()
            cache.synced.wait(10)
        body = queued_job("render", "1GiB", 5, "1s")
        command = body["spec"]["template"]["spec"]["containers"][0]
        command["command"] = [sys.executable, "-c", "import sys; print('done'); sys.exit(3)"]
        kube.batch.create_namespaced_job("default", body)
        launcher = KubeJobLauncher(session, jobs)
        uid = wait_for(lambda: [j["metadata"]["uid"] for j in jobs.items()], what="cached")[0]
        # The launch checks the lease its admission took.
        assert leases.acquire(client, "default", leases.lease_name("job", uid), CP)
        spec = JobSpec.model_validate(
            {"gpu": "gpu0", "vram": "1GiB", "command": ["k"], "env": {KUBE_JOB: "default/render"}}
        )
        handle = launcher.launch(
            JobId("j1"), spec, gpu=GpuSpec(name=GpuName("gpu0")), workdir=tmp_path, log_dir=tmp_path
        )
        wait_for(lambda: [j for j in jobs.items() if j.get("status", {}).get("failed")], timeout=20, what="failed")  # fmt: skip
        wait_for(lambda: launcher._exit_code(handle) is not None, what="the pod's end seen")
        kube.batch.delete_namespaced_job("render", "default", propagation_policy="Background")
        wait_for(lambda: not jobs.items() and not launcher._pods(handle), timeout=20, what="gone")
        exited = launcher.poll(handle)
        assert exited is not None
        assert exited.code == 3
        assert Handle.from_json(handle.to_json()) == handle
        gone = Handle.of(
            "kubejob", namespace="default", name="other", uid="nobody", out=str(tmp_path / "x")
        )
        assert launcher.poll(gone) == Exited(None, reason="the Job was deleted and how it ended is unknown")  # fmt: skip
    finally:
        for cache in (pods, jobs):
            cache.stop()
        client.close()
    with pytest.raises(ApiException):
        kube.batch.read_namespaced_job("render", "default")


# --- status -------------------------------------------------------------------------------


def test_status_shows_each_tenants_workload_and_its_state(
    kube: Kube, sim_dir: Path, tmp_path: Path
) -> None:
    _tenants(kube, sim_dir)
    state = tmp_path / "state"
    with broker(kube.cluster, sim_dir, CP, 0, state):
        kube.batch.create_namespaced_job("default", queued_job("render", "6GiB", 50, "4s"))

        def released() -> dict[str, Any] | None:
            tenants = {t["name"]: t for t in cli(state, "status")["tenants"]}
            tts = tenants.get("tts")
            return tenants if tts and tts["state"] == "released" and tts["workload_state"].startswith("released by") else None  # fmt: skip

        tenants = wait_for(released, timeout=30, what="tts released in status")
        assert tenants["tts"]["workload"] == "Deployment/default/tts"
        assert tenants["tts"]["workload_state"].startswith(f"released by {CP}/")
        assert tenants["tts"]["workload_state"].endswith(": 0/0 ready, restores to 1")
        assert tenants["ollama"]["workload"] == "Deployment/default/ollama"
        assert tenants["ollama"]["workload_state"] == "1/1 ready"
        text = subprocess.run(
            [sys.executable, "-m", "gpuherd", "status", "--socket", str(state / "api.sock")],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip
        assert "tenant ollama: running  [Deployment/default/ollama: 1/1 ready]" in text
        assert "tenant tts: released  [Deployment/default/tts: released by" in text
        wait_for(lambda: _restored(kube), timeout=30, what="tts back")
        back = wait_for(
            lambda: [t for t in cli(state, "status")["tenants"] if t["name"] == "tts" and t["workload_state"] == "1/1 ready"],
            what="tts running again in status",
        )  # fmt: skip
        assert back[0]["state"] == "running"
