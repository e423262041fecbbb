"""deploy/kubernetes: valid objects for the real API (kubernetes-validate, strict), no finding
from gpuherd's own lint, least-privilege RBAC, and a DaemonSet that can do the broker's work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

kubernetes_validate = pytest.importorskip("kubernetes_validate")

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"


def _docs() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(DEPLOY.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def _kind(kind: str) -> dict[str, Any]:
    return next(d for d in _docs() if d["kind"] == kind)


@pytest.mark.parametrize("profile", ["generic", "k3s", "microk8s"])
def test_gpuherd_lint_finds_nothing(profile: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gpuherd", "lint", "--profile", profile, str(DEPLOY)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("0 findings")


def test_every_object_passes_strict_schema_validation() -> None:
    docs = _docs()
    assert {d["kind"] for d in docs} >= {
        "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap",
        "DaemonSet", "Service",
    }  # fmt: skip
    for doc in docs:
        kubernetes_validate.validate(doc, "1.37.0", strict=True)


def test_the_kustomization_applies_every_manifest() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    files = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def _allowed(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    return any(
        group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in rules
    )


# What the broker's client calls, as (group, resource, verb).
NEEDED = [
    ("", "pods", "list"), ("", "pods", "watch"), ("", "pods", "patch"), ("", "pods/log", "get"),
    ("", "nodes", "get"), ("", "nodes", "list"), ("", "nodes", "watch"), ("", "persistentvolumes", "get"), ("", "persistentvolumeclaims", "get"),
    ("apps", "deployments", "list"), ("apps", "deployments", "patch"),
    ("apps", "statefulsets", "list"), ("apps", "deployments/scale", "get"),
    ("apps", "deployments/scale", "update"), ("apps", "statefulsets/scale", "update"),
    ("autoscaling", "horizontalpodautoscalers", "list"), ("keda.sh", "scaledobjects", "patch"),
    ("batch", "jobs", "list"), ("batch", "jobs", "watch"), ("batch", "jobs", "patch"),
    ("batch", "jobs", "create"), ("coordination.k8s.io", "leases", "create"),
    ("coordination.k8s.io", "leases", "update"), ("coordination.k8s.io", "leases", "delete"),
    ("coordination.k8s.io", "leases", "list"), ("coordination.k8s.io", "leases", "watch"),
    ("", "events", "create"),
]  # fmt: skip


def test_rbac_is_what_the_broker_uses_and_no_more() -> None:
    rules = _kind("ClusterRole")["rules"]
    for group, resource, verb in NEEDED:
        assert _allowed(rules, group, resource, verb), (group, resource, verb)
    for rule in rules:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
        assert "secrets" not in rule["resources"]
    assert not _allowed(rules, "", "pods", "delete")
    binding = _kind("ClusterRoleBinding")
    assert binding["subjects"][0]["name"] == _kind("ServiceAccount")["metadata"]["name"]


def test_the_daemonset_runs_one_broker_per_gpu_node() -> None:
    ds = _kind("DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostPID"] is True  # attribution reads /proc/PID/cgroup of the pods' processes
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    [c] = pod["containers"]
    assert c["args"][:2] == ["serve", "--kubernetes"]
    env = {e["name"]: e for e in c["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert "nvidia.com/gpu" not in c["resources"].get("limits", {})  # it takes no GPU
    assert c["livenessProbe"]
    assert c["readinessProbe"]
    assert c["resources"]["limits"]["memory"]
    security = c["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert security["readOnlyRootFilesystem"] is True
    state = next(v for v in pod["volumes"] if v["name"] == "state")
    assert state["hostPath"]["path"] == "/var/lib/gpuherd"  # the journal outlives the pod
    service = _kind("Service")
    assert service["spec"]["ports"][0]["port"] == c["ports"][0]["containerPort"]
    assert service["spec"]["selector"] == ds["spec"]["selector"]["matchLabels"]
