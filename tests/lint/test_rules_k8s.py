"""Kubernetes rules: a failing and a passing case each, with exact positions."""

from __future__ import annotations

from gpuherd.lint.engine import LintOptions, lint_sources
from gpuherd.lint.model import Finding


def lint(text: str, rule: str, **options: object) -> list[Finding]:
    opts = LintOptions(select={rule}, **options)  # type: ignore[arg-type]
    return lint_sources([("m.yaml", text)], opts).findings


def where(findings: list[Finding]) -> list[tuple[int, int, str]]:
    return [(f.line, f.column, f.message) for f in findings]


NODE = """\
apiVersion: v1
kind: Node
metadata:
  name: k3s-gpu-01
  labels: {nvidia.com/gpu.present: "true"}
spec:
  taints:
    - {key: dedicated, value: gpu, effect: NoSchedule}
status:
  capacity: {nvidia.com/gpu: "1"}
---
"""

POD = """\
apiVersion: v1
kind: Pod
metadata: {name: render, namespace: mapshot}
spec:
  containers:
    - name: r
      image: mapshot
      resources: {limits: {nvidia.com/gpu: GPUS}}
"""


def test_gpu_count_against_nodes_and_flag() -> None:
    assert where(lint(NODE + POD.replace("GPUS", "2"), "gpu-count")) == [
        (
            16,
            3,
            "the pod needs 2 GPUs at once; any Node in the input has at most 1: it stays Pending",
        )
    ]
    assert lint(NODE + POD.replace("GPUS", "1"), "gpu-count") == []
    assert len(lint(POD.replace("GPUS", "3"), "gpu-count", max_gpus_per_node=2)) == 1
    assert lint(POD.replace("GPUS", "3"), "gpu-count") == []  # nothing to compare with


def test_runtime_class_under_k3s() -> None:
    pod = POD.replace("GPUS", "1")
    assert where(lint(pod, "runtime-class", profile="k3s")) == [
        (
            5,
            3,
            "GPU pod without runtimeClassName (the k3s profile does not make nvidia the default "
            "runtime): it starts without the GPU and falls back to the CPU",
        )
    ]
    assert lint(pod, "runtime-class") == []  # generic: nvidia may be the default
    fixed = pod.replace("spec:\n  containers:", "spec:\n  runtimeClassName: nvidia\n  containers:")
    assert lint(fixed, "runtime-class", profile="k3s") == []
    typo = fixed.replace("runtimeClassName: nvidia", "runtimeClassName: nvida")
    assert where(lint(typo, "runtime-class", profile="k3s")) == [
        (
            5,
            21,
            "RuntimeClass 'nvida' is not in the input and not created by k3s: the pod is rejected",
        )
    ]


def test_runtime_class_not_required_by_a_runtimeclass_alone() -> None:
    rc = "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {name: nvidia}\nhandler: nvidia\n---\n"
    assert lint(rc + POD.replace("GPUS", "1"), "runtime-class") == []


def test_toleration_for_gpu_node_taint() -> None:
    assert where(lint(NODE + POD.replace("GPUS", "1"), "gpu-toleration")) == [
        (
            16,
            3,
            "no toleration for the GPU node taint dedicated=gpu:NoSchedule: the pod cannot "
            "schedule there",
        )
    ]
    tolerated = POD.replace("GPUS", "1").replace(
        "spec:\n  containers:",
        "spec:\n  tolerations: [{key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}]\n"
        "  containers:",
    )
    assert lint(NODE + tolerated, "gpu-toleration") == []
    exists = POD.replace("GPUS", "1").replace(
        "spec:\n  containers:", "spec:\n  tolerations: [{operator: Exists}]\n  containers:"
    )
    assert lint(NODE + exists, "gpu-toleration") == []


def test_gke_daemonset_on_gpu_nodes() -> None:
    ds = """\
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: dcgm-exporter}
spec:
  template:
    spec:
      nodeSelector: {cloud.google.com/gke-accelerator: nvidia-l4, nvidia.com/gpu.present: "true"}
      containers: [{name: e, image: dcgm-exporter}]
"""
    found = lint(ds, "gpu-toleration", profile="gke")
    assert [(f.line, f.column) for f in found] == [(7, 7)]
    assert "nvidia.com/gpu=present:NoSchedule" in found[0].message
    assert lint(ds, "gpu-toleration") == []


SEED_002_STYLE = """\
apiVersion: v1
kind: Pod
metadata: {name: plex}
spec:
  volumes:
    - name: nvidia0
      hostPath: {path: /dev/nvidia0}
  containers:
    - name: plex
      image: plexinc/pms-docker
      volumeMounts: [{name: nvidia0, mountPath: /dev/nvidia0}]
      securityContext:
        privileged: true
        capabilities: {add: [SYS_ADMIN]}
"""


def test_privilege_and_hostpath() -> None:
    assert [
        (f.line, f.column, f.message.split(" ")[0]) for f in lint(SEED_002_STYLE, "gpu-privilege")
    ] == [
        (7, 24, "hostPath"),
        (13, 21, "privileged:"),
        (14, 30, "SYS_ADMIN"),
    ]
    unrelated = SEED_002_STYLE.replace("/dev/nvidia0}", "/srv/media}")
    assert lint(unrelated, "gpu-privilege") == []  # privilege on a non-GPU container is not ours


DEPLOY = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: ollama, namespace: ollama}
spec:
  STRATEGY
  template:
    spec:
      containers:
        - {name: o, image: ollama/ollama, resources: {limits: {RESOURCE: 1}}}
"""


def test_rolling_update_deadlock() -> None:
    default = DEPLOY.replace("  STRATEGY\n", "").replace("RESOURCE", "nvidia.com/gpu")
    assert where(lint(default, "rolling-update")) == [
        (
            1,
            1,
            "RollingUpdate with maxSurge 25% on a whole-GPU Deployment: the new pod waits for "
            "the GPU the old pod holds and the rollout deadlocks",
        )
    ]
    recreate = DEPLOY.replace("STRATEGY", "strategy: {type: Recreate}").replace(
        "RESOURCE", "nvidia.com/gpu"
    )
    assert lint(recreate, "rolling-update") == []
    no_surge = DEPLOY.replace(
        "STRATEGY",
        "strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 0, maxUnavailable: 1}}",
    ).replace("RESOURCE", "nvidia.com/gpu")
    assert lint(no_surge, "rolling-update") == []
    shared = DEPLOY.replace("  STRATEGY\n", "").replace("RESOURCE", "nvidia.com/gpu.shared")
    assert lint(shared, "rolling-update") == []  # time-sliced shares are not exclusive


def test_gpu_cronjob_and_job_bounds() -> None:
    cron = """\
apiVersion: batch/v1
kind: CronJob
metadata: {name: mapshot-render, namespace: mapshot}
spec:
  schedule: "0 4 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{name: r, image: mapshot, resources: {limits: {nvidia.com/gpu: 1}}}]
"""
    assert [(f.line, f.column) for f in lint(cron, "gpu-job-bounds")] == [(5, 3), (7, 5)]
    bounded = cron.replace(
        '  schedule: "0 4 * * *"', '  schedule: "0 4 * * *"\n  concurrencyPolicy: Forbid'
    ).replace(
        "    spec:\n      template:",
        "    spec:\n      activeDeadlineSeconds: 1800\n      template:",
    )
    assert lint(bounded, "gpu-job-bounds") == []
    job = (
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: train}\nspec:\n  template:\n    spec:\n"
        "      containers: [{name: t, image: x, resources: {limits: {nvidia.com/gpu: 1}}}]\n"
    )
    assert lint(job, "gpu-job-bounds") == []  # a plain GPU Job ends; no backoffLimit nag


def test_aks_gpu_pool_taint() -> None:
    pod = POD.replace("GPUS", "1")
    found = lint(pod, "gpu-toleration", profile="aks")
    assert [f.message for f in found] == [
        "no toleration for the GPU node taint sku=gpu:NoSchedule: the pod cannot schedule there"
    ]
    tolerated = pod.replace(
        "spec:\n  containers:",
        "spec:\n  tolerations: [{key: sku, operator: Equal, value: gpu, effect: NoSchedule}]\n  containers:",
    )
    assert lint(tolerated, "gpu-toleration", profile="aks") == []
