"""`gpuherd lint --cluster` and `gpuherd plan --from-cluster` against the simulated cluster:
objects created with the official client, the real CLI run as a subprocess on its kubeconfig.
RBAC is played by a loopback proxy in front of the cluster that answers 403 as a real API
server does for the lists a role does not grant."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
from kubernetes import client

from gpuherd.k8s.live import clean
from tests.conftest import gpuherd_argv
from tests.simcluster.conftest import Kube

GIB = 1024**3
SARIF_SCHEMA = Path(__file__).parent.parent / "lint" / "sarif-schema-2.1.0.json"
LIMITS_GPU = 'spec.template.spec.containers[0].resources.limits["nvidia.com/gpu"]'


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The real CLI, with no cluster credentials from this environment."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")
    }
    return subprocess.run(
        gpuherd_argv(*args), capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def deployment(
    name: str,
    limits: dict[str, str] | None = None,
    *,
    replicas: int = 0,
    annotations: dict[str, str] | None = None,
    requests: dict[str, str] | None = None,
    image: str | None = None,
    **spec: Any,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": image or f"example/{name}:1"}
    resources = {k: v for k, v in (("limits", limits), ("requests", requests)) if v}
    if resources:
        container["resources"] = resources
    pod_spec = {"containers": [container], **spec.pop("pod", {})}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec},
            **spec,
        },
    }


def cronjob(name: str, annotations: dict[str, str] | None = None, **pod: Any) -> dict[str, Any]:
    container = {"name": "main", "image": "example/batch:1"}
    container["resources"] = {"limits": {"nvidia.com/gpu": "1"}}  # type: ignore[assignment]
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {
            "schedule": "0 3 * * *",
            "suspend": True,
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {"restartPolicy": "Never", "containers": [container], **pod}
                    }
                }
            },
        },
    }


def namespace(kube: Kube, name: str) -> None:
    kube.core.create_namespace({"metadata": {"name": name}})


def findings(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return list(json.loads(result.stdout)["findings"])


def by_object(found: list[dict[str, Any]]) -> dict[str, set[tuple[str, str]]]:
    """location -> {(rule, field)}."""
    out: dict[str, set[tuple[str, str]]] = {}
    for f in found:
        out.setdefault(f["file"], set()).add((f["rule"], f["field"]))
    return out


def _lint_cluster(kube: Kube) -> None:
    """The objects of the lint test: mistakes a rule catches, clean ones, and controlled ones."""
    namespace(kube, "ml")
    recreate: dict[str, Any] = {"strategy": {"type": "Recreate"}}
    apps = kube.apps
    apps.create_namespaced_deployment(
        "default", deployment("greedy", {"nvidia.com/gpu": "4"}, **recreate)
    )
    apps.create_namespaced_deployment("default", deployment("rolling", {"nvidia.com/gpu": "1"}))
    apps.create_namespaced_deployment(
        "default",
        deployment(
            "mismatch", {"nvidia.com/gpu": "1"}, requests={"nvidia.com/gpu": "2"}, **recreate
        ),
    )
    apps.create_namespaced_deployment(
        "default",
        deployment(
            "quiet",
            {"nvidia.com/gpu": "1"},
            annotations={"gpuherd.io/ignore": "rolling-update"},
        ),
    )
    # Clean, and running: its ReplicaSet and pod are the controller's, never reported.
    apps.create_namespaced_deployment(
        "default",
        deployment(
            "clean",
            {"nvidia.com/gpu": "1"},
            replicas=1,
            annotations={
                "kubectl.kubernetes.io/last-applied-configuration": json.dumps(
                    deployment("clean", requests={"nvidia.com/gpu": "1"})
                )
            },
            **recreate,
        ),
    )
    apps.create_namespaced_deployment(
        "default",
        deployment(
            "oldruntime",
            {"nvidia.com/gpu": "1"},
            pod={"runtimeClassName": "nvidia-legacy"},
            **recreate,
        ),
    )
    runtime_class: Any = {
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {"name": "nvidia"},
        "handler": "nvidia",
    }
    client.NodeV1Api(kube.api_client).create_runtime_class(runtime_class)
    made = kube.batch.create_namespaced_cron_job("default", cronjob("nightly"))
    # A run of the CronJob: its Job is the CronJob's, judged through the CronJob's template.
    run_of_it = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "nightly-29000000",
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "CronJob",
                    "name": "nightly",
                    "uid": made.metadata.uid,
                    "controller": True,
                }
            ],
        },
        "spec": {
            "suspend": True,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "image": "example/batch:1",
                            "command": ["sleep", "infinity"],
                            "resources": {"limits": {"nvidia.com/gpu": "1"}},
                        }
                    ],
                }
            },
        },
    }
    kube.batch.create_namespaced_job("default", run_of_it)
    kube.core.create_namespaced_pod(
        "ml",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "debug"},
            "spec": {
                "containers": [
                    {
                        "name": "shell",
                        "image": "nvidia/cuda:12.4.1-base-ubuntu22.04",
                        "env": [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}],
                    }
                ]
            },
        },
    )
    apps.create_namespaced_daemon_set(
        "ml",
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "exporter"},
            "spec": {
                "selector": {"matchLabels": {"app": "exporter"}},
                "template": {
                    "metadata": {"labels": {"app": "exporter"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "main",
                                "image": "example/exporter:1",
                                "resources": {"limits": {"nvidia.com/gpu": "0"}},
                            }
                        ]
                    },
                },
            },
        },
    )
    kube.running("app=clean", 1)


def test_lint_cluster_reports_live_objects_by_name_and_field(kube: Kube) -> None:
    _lint_cluster(kube)
    config = str(kube.cluster.kubeconfig)
    result = run("lint", "--cluster", "--kubeconfig", config, "--format", "json")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    found = findings(result)
    assert by_object(found) == {
        "cluster:default/Deployment/greedy": {("gpu-count", "spec.template.spec")},
        "cluster:default/Deployment/rolling": {("rolling-update", "spec.strategy")},
        "cluster:default/Deployment/mismatch": {
            (
                "gpu-limits",
                'spec.template.spec.containers[0].resources.requests["nvidia.com/gpu"]',
            )
        },
        "cluster:default/Deployment/oldruntime": {
            ("runtime-class", "spec.template.spec.runtimeClassName")
        },
        "cluster:default/CronJob/nightly": {
            ("gpu-job-bounds", "spec.concurrencyPolicy"),
            ("gpu-job-bounds", "spec.jobTemplate"),
        },
        "cluster:ml/Pod/debug": {("visible-devices", "spec.containers[0].env[0].value")},
        "cluster:ml/DaemonSet/exporter": {
            ("gpu-zero", LIMITS_GPU),
        },
    }
    # Live facts judged them: the Nodes' GPU count, the RuntimeClasses that exist.
    messages = {f["rule"]: f["message"] for f in found}
    assert "any Node in the cluster has at most 1" in messages["gpu-count"]
    assert "cluster:RuntimeClass/nvidia" in messages["runtime-class"]
    assert all(f["line"] == 0 and f["column"] == 0 for f in found)
    cluster = json.loads(result.stdout)["cluster"]
    assert (cluster["read"]["replicasets"], cluster["read"]["pods"]) == (6, 2)
    assert cluster["skipped"] == []

    text = run("lint", "--cluster", "--kubeconfig", config)
    assert text.returncode == 1
    assert (
        "cluster:default/Deployment/mismatch: spec.template.spec.containers[0].resources."
        'requests["nvidia.com/gpu"]: error gpu-limits nvidia.com/gpu request 2 differs'
    ) in text.stdout
    assert re.search(r"^8 findings \(.*\) in \d+ objects$", text.stdout, re.M), text.stdout

    sarif = run("lint", "--cluster", "--kubeconfig", config, "--format", "sarif")
    assert sarif.returncode == 1
    log = json.loads(sarif.stdout)
    jsonschema.validate(log, json.loads(SARIF_SCHEMA.read_text()))
    uris = {
        (r["ruleId"], r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"])
        for r in log["runs"][0]["results"]
    }
    assert ("gpu-count", "k8s://default/Deployment/greedy") in uris
    mismatch = next(r for r in log["runs"][0]["results"] if r["ruleId"] == "gpu-limits")
    assert mismatch["locations"][0]["logicalLocations"][0]["name"].startswith(
        "spec.template.spec.containers[0].resources.requests"
    )

    # One namespace: only its workloads; a clean namespace is exit 0.
    ml = run("lint", "--cluster", "--kubeconfig", config, "-n", "ml", "--format", "json")
    assert ml.returncode == 1
    assert set(by_object(findings(ml))) == {"cluster:ml/Pod/debug", "cluster:ml/DaemonSet/exporter"}
    namespace(kube, "quiet")
    kube.apps.create_namespaced_deployment(
        "quiet", deployment("fine", {"nvidia.com/gpu": "1"}, strategy={"type": "Recreate"})
    )
    clean_ns = run("lint", "--cluster", "--kubeconfig", config, "--namespace", "quiet")
    assert clean_ns.returncode == 0, clean_ns.stdout
    assert clean_ns.stdout.startswith("0 findings")

    # A device-plugin config in a ConfigMap renames the resource: every nvidia.com/gpu pod is
    # now asking for a name the plugin no longer advertises, the clean one too.
    sharing = (
        "version: v1\nsharing:\n  timeSlicing:\n    renameByDefault: true\n    resources:\n"
        "    - name: nvidia.com/gpu\n      replicas: 4\n"
    )
    kube.core.create_namespaced_config_map(
        "ml",
        {"metadata": {"name": "time-slicing-config"}, "data": {"any": sharing}},
    )
    shared = run(
        "lint", "--cluster", "--kubeconfig", config, "--select", "shared-name", "-f", "json"
    )
    assert shared.returncode == 1
    assert ("shared-name", LIMITS_GPU) in by_object(findings(shared))[
        "cluster:default/Deployment/clean"
    ]


def test_server_noise_is_stripped_and_node_capacity_kept() -> None:
    live = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "x",
            "uid": "u",
            "resourceVersion": "9",
            "generation": 2,
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "managedFields": [{"manager": "kubectl"}],
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
        },
        "spec": {"template": {"metadata": {"creationTimestamp": None}, "spec": {}}},
        "status": {"replicas": 1},
    }
    assert clean(live) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"template": {"metadata": {}, "spec": {}}},
    }
    assert live["status"] == {"replicas": 1}  # a copy: the object read is left alone
    node = {
        "kind": "Node",
        "metadata": {"name": "n"},
        "status": {"capacity": {"nvidia.com/gpu": "1"}, "conditions": [], "images": []},
    }
    assert clean(node)["status"] == {"capacity": {"nvidia.com/gpu": "1"}}


def _objects_for_plan(kube: Kube) -> None:
    on = {"nodeSelector": {"kubernetes.io/hostname": "k3s-cp-01"}}
    for name, vram in (("llm", "9GiB"), ("whisper", "4GiB")):
        kube.apps.create_namespaced_deployment(
            "default",
            deployment(
                name,
                {"nvidia.com/gpu": "1"},
                annotations={"gpuherd.io/vram": vram, "gpuherd.io/priority": "10"},
                strategy={"type": "Recreate"},
                pod=on,
            ),
        )
    kube.batch.create_namespaced_cron_job(
        "default",
        cronjob(
            "embed",
            annotations={"gpuherd.io/vram": "2GiB", "gpuherd.io/active": "0 3 * * * for 1h"},
            nodeSelector={"kubernetes.io/hostname": "k3s-gpu-02"},
        ),
    )


def _items(listed: Any, api_version: str, kind: str) -> list[dict[str, Any]]:
    """A list's items as a manifest holds them (a real server leaves kind out of items)."""
    return [
        {"apiVersion": api_version, "kind": kind, **item}
        for item in json.loads(listed.data)["items"]
        if item["metadata"]["name"] != "router"
    ]


def test_plan_from_cluster_matches_plan_from_manifests(kube: Kube, tmp_path: Path) -> None:
    _objects_for_plan(kube)
    # A CPU-only router whose image mentions vLLM: not a tenant of the cluster's GPUs.
    kube.apps.create_namespaced_deployment(
        "default", deployment("router", image="vllm/vllm-router:0.1", strategy={"type": "Recreate"})
    )
    config = str(kube.cluster.kubeconfig)
    live = run(
        "plan",
        "--from-cluster",
        "--kubeconfig",
        config,
        "--format",
        "json",
        "--week-start",
        "2026-11-23",
    )
    assert live.returncode == 1, live.stderr
    plan = json.loads(live.stdout)
    gpus = {g["name"]: g for g in plan["gpus"]}
    assert gpus["k3s-cp-01"]["capacity_bytes"] == 12 * GIB
    assert (gpus["k3s-cp-01"]["verdict"], gpus["k3s-cp-01"]["peak_bytes"]) == ("over", 13 * GIB)
    assert (gpus["k3s-gpu-02"]["verdict"], gpus["k3s-gpu-02"]["peak_bytes"]) == ("fits", 2 * GIB)
    assert "router" not in live.stdout

    # The same objects, as read from the server, written to a file for --from-k8s.
    raw = {"_preload_content": False}
    items = [
        *_items(kube.apps.list_namespaced_deployment("default", **raw), "apps/v1", "Deployment"),
        *_items(kube.batch.list_namespaced_cron_job("default", **raw), "batch/v1", "CronJob"),
        *_items(kube.core.list_node(**raw), "v1", "Node"),
    ]
    manifests = tmp_path / "manifests.json"
    manifests.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    files = run(
        "plan", "--from-k8s", str(manifests), "--format", "json", "--week-start", "2026-11-23"
    )
    assert files.returncode == 1, files.stderr
    from_files = json.loads(files.stdout)

    def verdicts(p: dict[str, Any]) -> list[tuple[str, str, int, int]]:
        return sorted(
            (g["name"], g["verdict"], g["capacity_bytes"], g["peak_bytes"]) for g in p["gpus"]
        )

    assert verdicts(plan) == verdicts(from_files)
    text = run("plan", "--from-cluster", "--kubeconfig", config)
    assert text.returncode == 1
    assert "k3s-cp-01" in text.stdout
    assert "over" in text.stdout


# --- RBAC: a proxy that forbids what a namespaced role would not grant -------------------------

_NAMESPACED = r"(pods|deployments|statefulsets|daemonsets|replicasets|jobs|cronjobs|configmaps|persistentvolumeclaims)"


@contextmanager
def rbac_proxy(upstream: str, deny: Callable[[str], bool]) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if deny(path):
                body = json.dumps(
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Failure",
                        "message": f'{path} is forbidden: User "viewer" cannot list it',
                        "reason": "Forbidden",
                        "code": 403,
                    }
                ).encode()
                status = 403
            else:
                request = urllib.request.Request(
                    upstream + self.path,
                    headers={"Authorization": self.headers.get("Authorization", "")},
                )
                try:
                    with urllib.request.urlopen(request, timeout=30) as resp:
                        status, body = resp.status, resp.read()
                except urllib.error.HTTPError as exc:
                    status, body = exc.code, exc.read()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _kubeconfig_for(kube: Kube, server: str, path: Path) -> Path:
    text = kube.cluster.kubeconfig.read_text().replace(kube.cluster.url, server)
    path.write_text(text)
    return path


def test_namespaces_the_credentials_may_not_list_are_skipped_and_named(
    kube: Kube, tmp_path: Path
) -> None:
    namespace(kube, "secret")
    kube.apps.create_namespaced_deployment(
        "default", deployment("rolling", {"nvidia.com/gpu": "1"})
    )
    kube.apps.create_namespaced_deployment("secret", deployment("hidden", {"nvidia.com/gpu": "1"}))
    cluster_wide = re.compile(rf"^/(api/v1|apis/[a-z.]+/v1)/{_NAMESPACED}$")
    deny_namespaces = {"on": False}

    def deny(path: str) -> bool:
        if deny_namespaces["on"] and path == "/api/v1/namespaces":
            return True
        return bool(cluster_wide.match(path)) or "/namespaces/secret/" in path

    with rbac_proxy(kube.cluster.url, deny) as url:
        config = str(_kubeconfig_for(kube, url, tmp_path / "viewer.kubeconfig"))
        result = run("lint", "--cluster", "--kubeconfig", config, "--format", "json")
        assert result.returncode == 1, result.stderr
        assert set(by_object(findings(result))) == {"cluster:default/Deployment/rolling"}
        assert result.stderr.startswith("skipped (403 forbidden): namespace secret: deployments")
        assert ", pods, " in result.stderr
        report = json.loads(result.stdout)["cluster"]
        assert "secret" in report["namespaces_read_one_by_one"]
        assert {"resource": "deployments", "namespace": "secret", "reason": "forbidden"} in report[
            "skipped"
        ]
        # Not even the namespaces may be listed: the context's own namespace is read.
        deny_namespaces["on"] = True
        own = run("lint", "--cluster", "--kubeconfig", config, "--format", "json")
        assert own.returncode == 1, own.stderr
        assert json.loads(own.stdout)["cluster"]["namespaces_read_one_by_one"] == ["default"]
        # Nothing at all may be listed: exit 4, one line.
        forbid_all = run("lint", "--cluster", "--kubeconfig", config, "-n", "secret")
        assert forbid_all.returncode == 4
        assert forbid_all.stderr.strip().count("\n") == 0, forbid_all.stderr
        assert "may not list any workloads" in forbid_all.stderr


# --- no cluster at all ------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_api_server_is_exit_4_in_one_line(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: gone\n"
        f"clusters:\n- name: gone\n  cluster: {{server: 'http://127.0.0.1:{_closed_port()}'}}\n"
        "contexts:\n- name: gone\n  context: {cluster: gone, user: u}\n"
        "users:\n- name: u\n  user: {token: t}\n"
    )
    for args in (("lint", "--cluster"), ("plan", "--from-cluster")):
        result = run(*args, "--kubeconfig", str(kubeconfig))
        assert result.returncode == 4, (args, result.stderr)
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert "cannot read the cluster" in lines[0]
        assert "did not answer" in lines[0]
    wrong_context = run("lint", "--cluster", "--kubeconfig", str(kubeconfig), "--context", "nope")
    assert wrong_context.returncode == 2
    assert "Traceback" not in wrong_context.stderr
    missing = run("lint", "--cluster", "--kubeconfig", str(tmp_path / "absent"))
    assert missing.returncode == 2
    assert "cannot load the Kubernetes config" in missing.stderr


def test_bad_flag_combinations_are_exit_2(tmp_path: Path) -> None:
    cases = [
        (("lint", "--cluster", str(tmp_path)), "not files"),
        (("lint", str(tmp_path), "--namespace", "x"), "only with --cluster"),
        (("lint", "--cluster", "-n", "x", "-A"), "choose one"),
        (("plan", "--from-cluster", "--from-k8s", str(tmp_path)), "choose one"),
        (("plan", "--context", "x", "--from-k8s", str(tmp_path)), "only with --from-cluster"),
    ]
    for args, message in cases:
        result = run(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)


def test_without_the_kubernetes_client_the_message_names_the_extra() -> None:
    code = (
        "import runpy, sys; sys.modules['kubernetes'] = None; "
        "sys.argv = ['gpuherd', *sys.argv[1:]]; runpy.run_module('gpuherd', run_name='__main__')"
    )
    for args in (("lint", "--cluster"), ("plan", "--from-cluster")):
        result = subprocess.run(
            [sys.executable, "-c", code, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2, result.stderr
        assert "pip install 'gpuherd[kubernetes]'" in result.stderr
        assert "Traceback" not in result.stderr


def test_the_lint_modules_load_no_kubernetes_client() -> None:
    code = (
        "import sys, gpuherd.cli.lint, gpuherd.cli.plan, gpuherd.cli.cluster, "
        "gpuherd.lint.cluster, gpuherd.lint.engine; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kubernetes', 'pydantic')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
