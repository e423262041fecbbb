"""Random input through every loader and rule: always findings or a clean pass, never a crash."""

from __future__ import annotations

import json

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpuherd.lint.engine import LintOptions, lint_sources

NAMES = [
    "m.yaml",
    "m.json",
    "config.toml",
    "config.toml.tmpl",
    "ecs.config",
    "user-data.sh",
    "daemon.json",
    "compose.yaml",
    "main.tf",
    "config.toml.ubuntu",
    "notes",
]
_keys = st.sampled_from(
    [
        "apiVersion",
        "kind",
        "metadata",
        "spec",
        "template",
        "containers",
        "initContainers",
        "resources",
        "limits",
        "requests",
        "nvidia.com/gpu",
        "nvidia.com/gpu.shared",
        "env",
        "name",
        "value",
        "volumes",
        "hostPath",
        "path",
        "persistentVolumeClaim",
        "claimName",
        "nodeSelector",
        "tolerations",
        "taints",
        "status",
        "capacity",
        "annotations",
        "data",
        "version",
        "sharing",
        "timeSlicing",
        "mps",
        "replicas",
        "devices",
        "rename",
        "services",
        "deploy",
        "reservations",
        "capabilities",
        "count",
        "device_ids",
        "containerDefinitions",
        "resourceRequirements",
        "linuxParameters",
        "runtimes",
        "default-runtime",
        "strategy",
        "jobTemplate",
        "items",
        "securityContext",
        "image",
        "command",
        "handler",
        "volumeName",
        "nodeAffinity",
        "required",
        "nodeSelectorTerms",
        "matchExpressions",
        "flags",
        "migStrategy",
        "volumeMounts",
        "leaderWorkerTemplate",
        "workerTemplate",
        "workerGroupSpecs",
        "replicatedJobs",
        "groupName",
        "gpu-fraction",
        "nvidia.com/gpumem",
        "nvidia.com/device-plugin.config",
        "operator",
        "key",
        "values",
        "activeDeadlineSeconds",
    ]
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 10),
    st.floats(allow_nan=True),
    st.sampled_from(
        [
            "Pod",
            "Deployment",
            "CronJob",
            "List",
            "Node",
            "ConfigMap",
            "all",
            "v1",
            "nvidia.com/gpu=all",
            "/dev/nvidia0",
            "NVIDIA_VISIBLE_DEVICES",
            "1",
            "0.5",
            "RuntimeClass",
            "PersistentVolume",
            "PersistentVolumeClaim",
            "StorageClass",
            "version: v1\nsharing: {timeSlicing: {resources: 3}}",
            "Recreate",
            "LeaderWorkerSet",
            "RayCluster",
            "In",
            "sleep infinity",
        ]
    ),
    st.text(max_size=6),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=6)),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    doc=st.dictionaries(_keys, _values, max_size=8), name=st.sampled_from(NAMES[:2] + NAMES[6:8])
)
def test_structured_documents_never_crash(doc: dict[str, object], name: str) -> None:
    text = json.dumps(doc) if name.endswith(".json") else yaml.safe_dump(doc)
    for f in lint_sources([(name, text)], LintOptions()).findings:
        assert f.line >= 1
        assert f.rule != "internal-error", f.message
        assert f.column >= 1
        assert f.rule != "internal-error", f.message


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(
        alphabet=st.sampled_from(list("ab:-[]{}=\"#'\n .,0123456789/|ECS_=")), max_size=120
    ),
    name=st.sampled_from(NAMES),
)
def test_raw_text_never_crashes(text: str, name: str) -> None:
    for f in lint_sources([(name, text)], LintOptions()).findings:
        assert f.line >= 1
        assert f.rule != "internal-error", f.message


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["Pod", "Deployment", "CronJob", "Job", "DaemonSet"]),
    resources=_values,
    env=_values,
    volumes=_values,
    meta=_values,
    security=_values,
    strategy=_values,
    node=_values,
    plugin=_values,
    compose=_values,
    task=_values,
)
def test_skeletons_with_random_slots_never_crash(
    *,
    kind: str,
    resources: object,
    env: object,
    volumes: object,
    meta: object,
    security: object,
    strategy: object,
    node: object,
    plugin: object,
    compose: object,
    task: object,
) -> None:
    """Valid shapes for every input kind, with random values where the rules look."""
    container = {
        "name": "c",
        "image": "nvidia/cuda",
        "resources": resources,
        "env": env,
        "securityContext": security,
        "volumeMounts": volumes,
    }
    pod_spec = {
        "containers": [container],
        "initContainers": [container],
        "volumes": volumes,
        "nodeSelector": node,
        "tolerations": node,
        "runtimeClassName": meta,
    }
    template = {"metadata": {"annotations": meta}, "spec": pod_spec}
    spec: dict[str, object] = {
        "Pod": pod_spec,
        "CronJob": {"concurrencyPolicy": strategy, "jobTemplate": {"spec": {"template": template}}},
    }.get(kind, {"template": template, "strategy": strategy})
    docs = [
        {
            "apiVersion": "v1",
            "kind": kind,
            "metadata": {"name": "x", "annotations": meta},
            "spec": spec,
        },
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "n", "labels": node},
            "spec": {"taints": node},
            "status": {"capacity": resources},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "c"},
            "data": {"config.yaml": yaml.safe_dump({"version": "v1", "sharing": plugin})},
        },
        {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv"}, "spec": node},
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "c"},
            "spec": volumes,
        },
        {"version": "v1", "sharing": plugin, "flags": meta},
    ]
    sources = [
        ("k.yaml", yaml.safe_dump_all(docs)),
        (
            "compose.yaml",
            yaml.safe_dump({"services": {"s": {"image": "x", "deploy": compose, "runtime": meta}}}),
        ),
        (
            "task.json",
            json.dumps(
                {
                    "family": "f",
                    "requiresCompatibilities": meta,
                    "containerDefinitions": [
                        {
                            "name": "c",
                            "image": "cuda",
                            "resourceRequirements": task,
                            "linuxParameters": compose,
                            "environment": env,
                        }
                    ],
                }
            ),
        ),
        ("daemon.json", json.dumps({"default-runtime": meta, "runtimes": plugin})),
        ("ecs.config", "ECS_ENABLE_GPU_SUPPORT=false\n"),
    ]
    for f in lint_sources(sources, LintOptions(max_gpus_per_node=1, profile="gke")).findings:
        assert f.line >= 1
        assert f.column >= 1
        assert f.rule != "internal-error", f.message
