"""Device-plugin config rules: standalone and ConfigMap-embedded configs, exact positions."""

from __future__ import annotations

from gpuherd.lint.engine import LintOptions, lint_sources
from gpuherd.lint.model import Finding

# Seed 001's config, inside the ConfigMap the device plugin reads.
SEED_001 = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: nvidia-device-plugin-config, namespace: kube-system}
data:
  config.yaml: |
    version: v1
    sharing:
      timeSlicing:
        renameByDefault: true
        failRequestsGreaterThanOne: FAIL
        resources:
          - name: nvidia.com/gpu
            replicas: 8
---
"""

WORKLOAD = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: vllm-server, namespace: ai-dev}
spec:
  strategy: {type: Recreate}
  template:
    spec:
      containers:
        - name: vllm
          image: vllm/vllm-openai
          resources:
            limits: {RESOURCE: COUNT}
"""


def lint(*files: tuple[str, str], rule: str) -> list[Finding]:
    return lint_sources(list(files), LintOptions(select={rule})).findings


def brief(findings: list[Finding]) -> list[tuple[str, int, int, str]]:
    return [(f.file, f.line, f.column, f.severity) for f in findings]


def workload(resource: str, count: int) -> str:
    return WORKLOAD.replace("RESOURCE", resource).replace("COUNT", str(count))


def test_seed_001_shares_buy_no_compute() -> None:
    text = SEED_001.replace("FAIL", "false") + workload("nvidia.com/gpu.shared", 2)
    found = lint(("k.yaml", text), rule="shared-replicas")
    assert brief(found) == [("k.yaml", 26, 45, "warning")]
    assert found[0].message == (
        "nvidia.com/gpu.shared: 2 does not buy 2x GPU time: time-slicing "
        "gives every process an equal share, whatever it requested"
    )
    assert (
        lint(
            ("k.yaml", SEED_001.replace("FAIL", "false") + workload("nvidia.com/gpu.shared", 1)),
            rule="shared-replicas",
        )
        == []
    )


def test_fail_requests_greater_than_one_makes_it_an_error() -> None:
    text = SEED_001.replace("FAIL", "true") + workload("nvidia.com/gpu.shared", 2)
    found = lint(("k.yaml", text), rule="shared-replicas")
    assert brief(found) == [("k.yaml", 26, 45, "error")]
    assert "UnexpectedAdmissionError" in found[0].message


def test_shared_without_config_still_warns() -> None:
    assert brief(
        lint(("w.yaml", workload("nvidia.com/gpu.shared", 3)), rule="shared-replicas")
    ) == [("w.yaml", 12, 45, "warning")]


def test_renamed_resource_across_files() -> None:
    config = (
        "plugin.yaml",
        "version: v1\nsharing:\n  timeSlicing:\n    renameByDefault: true\n"
        "    resources:\n      - {name: nvidia.com/gpu, replicas: 4}\n",
    )
    found = lint(config, ("w.yaml", workload("nvidia.com/gpu", 1)), rule="shared-name")
    assert brief(found) == [("w.yaml", 12, 22, "error")]
    assert found[0].fix == "request nvidia.com/gpu.shared instead"
    assert lint(config, ("w.yaml", workload("nvidia.com/gpu.shared", 1)), rule="shared-name") == []
    explicit = (
        "plugin.yaml",
        "version: v1\nsharing:\n  timeSlicing:\n    resources:\n"
        "      - {name: nvidia.com/gpu, rename: gpu-slice, replicas: 4}\n",
    )
    assert lint(explicit, ("w.yaml", workload("nvidia.com/gpu", 1)), rule="shared-name")[0].fix == (
        "request gpu-slice instead"
    )


def test_shared_name_without_config_is_info() -> None:
    found = lint(("w.yaml", workload("nvidia.com/gpu.shared", 1)), rule="shared-name")
    assert [(f.severity, f.line) for f in found] == [("info", 12)]


def test_plugin_schema_errors_in_configmap() -> None:
    text = SEED_001.replace("FAIL", "false").replace(
        "replicas: 8", "replicas: 0\n            devices: some"
    )
    found = lint(("k.yaml", text), rule="plugin-schema")
    assert [(f.line, f.column, f.message) for f in found] == [
        (
            13,
            23,
            "replicas is 0: it must be a whole number >= 2 (the device plugin refuses the "
            "config and advertises no GPUs)",
        ),
        (14, 22, "devices 'some': the only string allowed is 'all'"),
    ]
    assert found[0].object == "ConfigMap/kube-system/nvidia-device-plugin-config data[config.yaml]"


def test_plugin_schema_standalone() -> None:
    both = "version: v1\nsharing:\n  timeSlicing:\n    resources: []\n  mps:\n    resources: []\n"
    assert [
        (f.line, f.column, f.message.split(":")[0])
        for f in lint(("p.yaml", both), rule="plugin-schema")
    ] == [
        (4, 16, "timeSlicing needs a non-empty `resources` list"),
        (5, 3, "sharing sets both timeSlicing and mps"),
    ]
    mig = (
        "version: v1\nflags: {migStrategy: single}\nsharing:\n  mps:\n"
        "    resources: [{name: nvidia.com/gpu, replicas: 2}]\n"
    )
    assert [f.message for f in lint(("p.yaml", mig), rule="plugin-schema")] == [
        "MPS sharing is not supported with migStrategy single"
    ]
    good = "version: v1\nsharing:\n  timeSlicing:\n    resources: [{name: nvidia.com/gpu, replicas: 4, devices: all}]\n"
    assert lint(("p.yaml", good), rule="plugin-schema") == []


PER_NODE = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: nvidia-device-plugin-config, namespace: kube-system}
data:
  replicas-8: |
    version: v1
    sharing:
      timeSlicing:
        renameByDefault: true
        resources: [{name: nvidia.com/gpu, replicas: 8}]
  default: |
    version: v1
    flags: {migStrategy: none}
---
apiVersion: v1
kind: Node
metadata: {name: NODE, labels: {nvidia.com/device-plugin.config: KEY}}
---
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  nodeSelector: {kubernetes.io/hostname: PINNED}
  containers: [{name: c, image: x, resources: {limits: {nvidia.com/gpu: 1}}}]
"""


def test_per_node_plugin_configs() -> None:
    def run(node: str, key: str, pinned: str) -> list[Finding]:
        text = PER_NODE.replace("NODE", node).replace("KEY", key).replace("PINNED", pinned)
        return lint(("k.yaml", text), rule="shared-name")

    assert len(run("gpu-a", "replicas-8", "gpu-a")) == 1  # that node renames the resource
    assert run("gpu-a", "default", "gpu-a") == []  # that node shares nothing
    assert run("gpu-a", "replicas-8", "elsewhere") == []  # node unknown: not certain
