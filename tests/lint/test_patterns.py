"""Patterns seen on real configurations: each a failing case and its passing twin."""

from __future__ import annotations

from pathlib import Path

from gpuherd.lint.engine import LintOptions, discover, lint_sources
from gpuherd.lint.model import Finding


def lint(*sources: tuple[str, str], rules: set[str] | None = None, **opts: object) -> list[Finding]:
    options = LintOptions(select=rules, **opts)  # type: ignore[arg-type]
    return lint_sources(list(sources), options).findings


def lint_dirs(*paths: Path, rules: set[str] | None = None, **opts: object) -> list[Finding]:
    files = discover(list(paths))
    return lint(*[(str(p), p.read_text()) for p in files], rules=rules, **opts)


def rules_of(findings: list[Finding]) -> list[str]:
    return [f.rule for f in findings]


GPU_POD = """\
apiVersion: v1
kind: Pod
metadata: {name: app}
spec:
  containers:
    - name: app
      image: ghcr.io/example/app:1
      resources: {limits: {nvidia.com/gpu: 1}}
"""

OPERATOR_CLASSES = """\
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: nvidia}
handler: nvidia
---
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: nvidia-cdi}
handler: nvidia-cdi
---
"""

K3S_CONTAINERD = """\
version = 2
[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]
  runtime_type = "io.containerd.runc.v2"
"""


# 1. runtime-class: decided from a containerd config or the profile, never a RuntimeClass alone.


def test_runtime_class_objects_alone_prove_nothing() -> None:
    assert lint(("m.yaml", OPERATOR_CLASSES + GPU_POD), rules={"runtime-class"}) == []


def test_runtime_class_decided_by_containerd_config_in_input() -> None:
    found = lint(("config.toml", K3S_CONTAINERD), ("m.yaml", GPU_POD), rules={"runtime-class"})
    assert [(f.file, f.line) for f in found] == [("m.yaml", 5)]
    assert "config.toml" in found[0].message
    default = K3S_CONTAINERD.replace(
        'snapshotter = "overlayfs"', 'snapshotter = "overlayfs"\n  default_runtime_name = "nvidia"'
    )
    assert lint(("config.toml", default), ("m.yaml", GPU_POD), rules={"runtime-class"}) == []
    # nvidia as containerd's default overrides the k3s profile
    assert (
        lint(("config.toml", default), ("m.yaml", GPU_POD), rules={"runtime-class"}, profile="k3s")
        == []
    )


def test_runtime_class_reference_missing_when_classes_are_in_input() -> None:
    pod = GPU_POD.replace("spec:\n", "spec:\n  runtimeClassName: nvidia-legacy\n")
    found = lint(("m.yaml", OPERATOR_CLASSES + pod), rules={"runtime-class"})
    assert [f.line for f in found] == [15]
    good = GPU_POD.replace("spec:\n", "spec:\n  runtimeClassName: nvidia-cdi\n")
    assert lint(("m.yaml", OPERATOR_CLASSES + good), rules={"runtime-class"}) == []


# 2. visible-devices: GPU infrastructure sees every GPU; `all` beside a GPU limit is a smell.

DEVICE_PLUGIN_DS = """\
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: nvidia-device-plugin-daemonset, namespace: kube-system}
spec:
  template:
    spec:
      containers:
        - name: IMAGE_NAME
          image: IMAGE
          env:
            - {name: NVIDIA_VISIBLE_DEVICES, value: all}
          securityContext: {privileged: true}
          volumeMounts:
            - {name: dp, mountPath: /var/lib/kubelet/device-plugins}
      volumes:
        - {name: dp, hostPath: {path: /var/lib/kubelet/device-plugins}}
"""


def test_visible_devices_quiet_on_gpu_infrastructure() -> None:
    for image in (
        "nvcr.io/nvidia/k8s-device-plugin:v0.17.0",
        "nvcr.io/nvidia/k8s/dcgm-exporter:3.3.8-3.6.0-ubuntu22.04",
        "nvcr.io/nvidia/cloud-native/gpu-operator-validator:v24.9.0",
        "registry.local/my-own-plugin:1",  # privileged, mounts the device-plugins dir
    ):
        ds = DEVICE_PLUGIN_DS.replace("IMAGE_NAME", "c").replace("IMAGE", image)
        assert lint(("ds.yaml", ds), rules={"visible-devices"}) == [], image


def test_visible_devices_still_an_error_for_applications() -> None:
    app = (
        DEVICE_PLUGIN_DS.replace("IMAGE_NAME", "c")
        .replace("IMAGE", "ghcr.io/example/app:1")
        .replace("          securityContext: {privileged: true}\n", "")
        .replace("kind: DaemonSet", "kind: Deployment")
    )
    found = lint(("app.yaml", app), rules={"visible-devices"})
    assert [(f.line, f.severity) for f in found] == [(11, "error")]


def test_visible_devices_all_beside_a_gpu_limit() -> None:
    pod = GPU_POD + "      env: [{name: NVIDIA_VISIBLE_DEVICES, value: all}]\n"
    found = lint(("m.yaml", pod), rules={"visible-devices"})
    assert [(f.line, f.severity) for f in found] == [(9, "warning")]
    assert "every GPU" in found[0].message
    pinned = pod.replace("value: all", "value: void")
    assert lint(("m.yaml", pinned), rules={"visible-devices"}) == []


# 3. Sharing: HAMi, KAI fractions and time-slicing are not whole GPUs; per-node sharing configs.

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: infer}
spec:
  template:
    metadata: {annotations: {}}
    spec:
      containers:
        - name: infer
          image: vllm/vllm-openai
          resources:
            limits: {nvidia.com/gpu: 1}
"""


def test_rolling_update_fires_on_a_whole_gpu() -> None:
    assert rules_of(lint(("d.yaml", DEPLOYMENT), rules={"rolling-update"})) == ["rolling-update"]


def test_rolling_update_quiet_on_hami_kai_and_time_slicing() -> None:
    hami = DEPLOYMENT.replace(
        "{nvidia.com/gpu: 1}", "{nvidia.com/gpu: 1, nvidia.com/gpumem-percentage: 40}"
    )
    kai = DEPLOYMENT.replace("annotations: {}", 'annotations: {gpu-fraction: "0.5"}')
    for text in (hami, kai):
        assert lint(("d.yaml", text), rules={"rolling-update"}) == []
    sliced = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: time-slicing-config}
data:
  any: |-
    version: v1
    sharing:
      timeSlicing:
        resources:
          - name: nvidia.com/gpu
            replicas: 4
---
"""
    assert lint(("d.yaml", sliced + DEPLOYMENT), rules={"rolling-update"}) == []


PER_NODE = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: plugin-configs}
data:
  a100: |-
    version: v1
    flags: {migStrategy: none}
  t4: |-
    version: v1
    sharing:
      timeSlicing:
        failRequestsGreaterThanOne: true
        resources:
          - name: nvidia.com/gpu
            replicas: 4
---
"""

TWO_GPUS = GPU_POD.replace("nvidia.com/gpu: 1", "nvidia.com/gpu: 2")


def test_shared_replicas_applies_a_node_config_only_to_its_pods() -> None:
    on_t4 = TWO_GPUS.replace(
        "spec:\n", "spec:\n  nodeSelector: {nvidia.com/device-plugin.config: t4}\n"
    )
    found = lint(("m.yaml", PER_NODE + on_t4), rules={"shared-replicas"})
    assert [(f.severity, f.line) for f in found] == [("error", 25)]
    on_a100 = on_t4.replace("config: t4", "config: a100")
    assert lint(("m.yaml", PER_NODE + on_a100), rules={"shared-replicas"}) == []
    # no node chosen, and some nodes do not share: nothing is certain
    assert lint(("m.yaml", PER_NODE + TWO_GPUS), rules={"shared-replicas"}) == []


# 4. Evidence stays inside its project.


def test_evidence_does_not_cross_projects(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    for project in (one, two):
        project.mkdir()
        (project / "kustomization.yaml").write_text("resources: [app.yaml]\n")
    (one / "config.toml").write_text(K3S_CONTAINERD)
    (one / "app.yaml").write_text(GPU_POD)
    (two / "app.yaml").write_text(GPU_POD)
    found = lint_dirs(tmp_path, rules={"runtime-class"})
    assert [f.file for f in found] == [str(one / "app.yaml")]
    assert str(one / "config.toml") in found[0].message
    sliced = PER_NODE.replace("  a100: |-\n    version: v1\n    flags: {migStrategy: none}\n", "")
    (one / "config.toml").unlink()
    (one / "plugin.yaml").write_text(sliced)
    (two / "app.yaml").write_text(TWO_GPUS)
    assert lint_dirs(tmp_path, rules={"shared-replicas"}) == []
    (one / "app.yaml").write_text(TWO_GPUS)
    found = lint_dirs(tmp_path, rules={"shared-replicas"})
    assert [f.file for f in found] == [str(one / "app.yaml")]
    assert found[0].message.endswith(f"in {one / 'plugin.yaml'})")


def test_ecs_user_data_judges_only_its_own_module(tmp_path: Path) -> None:
    user_data, gpu_task = ECS_TF.split('resource "aws_ecs_task_definition"')
    user_data = user_data.replace("AMI_KIND", "x86_64")
    web, render = tmp_path / "web", tmp_path / "render"
    for module in (web, render):
        module.mkdir()
    (web / "asg.tf").write_text(user_data)  # a CPU service's instances, no GPU support
    (render / "task.tf").write_text(
        'resource "aws_ecs_task_definition"' + gpu_task.replace("GPUS", "1")
    )
    assert lint_dirs(tmp_path, rules={"ecs-agent"}) == []
    (render / "asg.tf").write_text(user_data)
    found = lint_dirs(tmp_path, rules={"ecs-agent"})
    assert [f.file for f in found] == [str(render / "asg.tf")]
    assert str(render / "task.tf") in found[0].message


# 5. Pod templates inside any kind.

LWS = """\
apiVersion: leaderworkerset.x-k8s.io/v1
kind: LeaderWorkerSet
metadata: {name: vllm}
spec:
  replicas: 2
  leaderWorkerTemplate:
    size: 2
    leaderTemplate:
      spec:
        containers:
          - name: leader
            image: vllm/vllm-openai
            resources: {limits: {nvidia.com/gpu: "8"}}
    workerTemplate:
      spec:
        containers:
          - name: worker
            image: vllm/vllm-openai
            resources: {requests: {nvidia.com/gpu: "8"}}
"""

RAY = """\
apiVersion: ray.io/v1
kind: RayCluster
metadata: {name: rc}
spec:
  headGroupSpec:
    template:
      spec:
        containers:
          - {name: head, image: rayproject/ray}
  workerGroupSpecs:
    - groupName: gpu
      template:
        spec:
          containers:
            - name: w
              image: rayproject/ray-ml
              resources: {limits: {nvidia.com/gpu: 0.5}}
"""

JOBSET = """\
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata: {name: train}
spec:
  replicatedJobs:
    - name: workers
      template:
        spec:
          template:
            spec:
              containers:
                - name: t
                  image: pytorch
                  resources: {requests: {nvidia.com/gpu: 1}}
"""

PYTORCHJOB = """\
apiVersion: kubeflow.org/v1
kind: PyTorchJob
metadata: {name: ddp}
spec:
  pytorchReplicaSpecs:
    Worker:
      replicas: 2
      template:
        spec:
          containers:
            - name: pytorch
              image: pytorch
              resources: {requests: {nvidia.com/gpu: 1}}
"""


def test_pod_templates_in_custom_kinds() -> None:
    for name, text, line in (("lws", LWS, 19), ("ray", RAY, 17), ("js", JOBSET, 14)):
        found = lint((f"{name}.yaml", text), rules={"gpu-limits"})
        assert [f.line for f in found] == [line], name
    found = lint(("pt.yaml", PYTORCHJOB), rules={"gpu-limits"})
    assert [(f.line, f.object) for f in found] == [(13, "PyTorchJob/ddp[Worker] container=pytorch")]
    fixed = LWS.replace("requests: {nvidia.com/gpu", "limits: {nvidia.com/gpu")
    assert lint(("lws.yaml", fixed), rules={"gpu-limits"}) == []


# 6. ECS Terraform as people write it.

ECS_TF = """\
data "aws_ssm_parameter" "ami" {
  name = "/aws/service/ecs/optimized-ami/amazon-linux-2/AMI_KIND/recommended/image_id"
}

resource "aws_launch_template" "gpu" {
  image_id  = data.aws_ssm_parameter.ami.value
  user_data = base64encode(<<-EOT
    #!/bin/bash
    echo ECS_CLUSTER=${var.cluster} >> /etc/ecs/ecs.config
  EOT
  )
}

resource "aws_ecs_task_definition" "train" {
  family                = "train-${var.env}"
  container_definitions = <<EOF
[
  {
    "name": "train",
    "image": "nvidia/cuda:${var.cuda_tag}",
    "memory": ${var.memory},
    "resourceRequirements": [{"type": "GPU", "value": "GPUS"}]
  }
]
EOF
}
"""


def test_ecs_heredoc_task_definitions_are_read() -> None:
    tf = ECS_TF.replace("AMI_KIND", "gpu").replace("GPUS", "0")
    found = lint(("main.tf", tf), rules={"ecs-gpu"})
    assert [(f.rule, f.line) for f in found] == [("ecs-gpu", 16)]
    assert "CUDA image" in found[0].message
    good = ECS_TF.replace("AMI_KIND", "gpu").replace("GPUS", "1")
    assert lint(("main.tf", good), rules={"ecs-gpu"}) == []


def test_ecs_agent_user_data_in_terraform_and_the_gpu_ami() -> None:
    plain = ECS_TF.replace("AMI_KIND", "x86_64").replace("GPUS", "1")
    found = lint(("main.tf", plain), rules={"ecs-agent"})
    assert [(f.rule, f.line) for f in found] == [("ecs-agent", 9)]
    gpu_ami = ECS_TF.replace("AMI_KIND", "gpu").replace("GPUS", "1")
    assert lint(("main.tf", gpu_ami), rules={"ecs-agent"}) == []
    by_filter = plain.replace(
        '"/aws/service/ecs/optimized-ami/amazon-linux-2/x86_64/recommended/image_id"',
        '"unused"\n}\ndata "aws_ami" "gpu" {\n  filter {\n    name   = "name"\n'
        '    values = ["amzn2-ami-ecs-gpu-hvm-*"]\n  }',
    )
    assert lint(("main.tf", by_filter), rules={"ecs-agent"}) == []


# 7. Smaller ones.

PLUGIN = """\
version: v1
sharing:
  timeSlicing:
    resources:
      - name: nvidia.com/gpu
        replicas: N
"""


def test_time_slicing_replicas_below_two() -> None:
    found = lint(("p.yaml", PLUGIN.replace("N", "1")), rules={"plugin-schema"})
    assert [(f.line, f.severity) for f in found] == [(6, "error")]
    assert lint(("p.yaml", PLUGIN.replace("N", "2")), rules={"plugin-schema"}) == []


COMPOSE = """\
services:
  app:
    image: ghcr.io/example/app
    deploy:
      resources:
        reservations:
          devices: [{driver: nvidia, count: 1, capabilities: CAPS}]
"""


def test_compose_capabilities_names_only_what_is_lost() -> None:
    found = lint(("compose.yaml", COMPOSE.replace("CAPS", "[gpu, compute, video]")))
    assert [(f.rule, f.severity) for f in found] == [("compose-gpu", "info")]
    assert "utility" in found[0].message
    assert "compute" not in found[0].message.split(":")[-1]
    video = lint(("compose.yaml", COMPOSE.replace("CAPS", "[gpu, video]")))
    assert [(f.severity, "CUDA" in f.message) for f in video] == [("warning", True)]
    full = COMPOSE.replace("CAPS", "[gpu, compute, utility, video]")
    assert lint(("compose.yaml", full)) == []


def test_unknown_file_names_are_sniffed(tmp_path: Path) -> None:
    path = tmp_path / "config.toml.ubuntu"
    path.write_text('[nvidia-container-runtime]\nruntimes = ["nvidia-container-runtime"]\n')
    found = lint((str(path), path.read_text()))
    assert "parse-error" not in rules_of(found)
    assert "runtime-toolkit" in rules_of(found)
    odd = lint(("notes.txt", "just some words\n: and a colon line ["))
    assert [(f.rule, f.severity) for f in odd] == [("unknown-input", "info")]
    assert "unknown input type" in odd[0].message


NODE = """\
apiVersion: v1
kind: Node
metadata:
  name: gpu-1
  labels: {nvidia.com/gpu.present: "true"}
spec:
  taints: [{key: gpu, value: "true", effect: NoSchedule}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: exporter}
spec:
  template:
    spec:
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms:
              - matchExpressions:
                  - {key: nvidia.com/gpu.present, operator: In, values: ["true"]}
      containers: [{name: e, image: exporter}]
"""


def test_toleration_reads_required_node_affinity() -> None:
    found = lint(("m.yaml", NODE), rules={"gpu-toleration"})
    assert [f.line for f in found] == [15]
    tolerated = NODE.replace(
        "      containers:", "      tolerations: [{key: gpu, operator: Exists}]\n      containers:"
    )
    assert lint(("m.yaml", tolerated), rules={"gpu-toleration"}) == []


JOB = """\
apiVersion: batch/v1
kind: Job
metadata: {name: bench}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: server
          image: vllm/vllm-openai
          args: [--model, m]
          ports: [{containerPort: 8000}]
          resources: {limits: {nvidia.com/gpu: 1}}
        - name: client
          image: bench
          command: [python, bench.py]
"""


def test_job_that_never_completes() -> None:
    found = lint(("j.yaml", JOB), rules={"gpu-job-bounds"})
    assert [(f.line, "never completes" in f.message) for f in found] == [(5, True)]
    bounded = JOB.replace("spec:\n  template:", "spec:\n  activeDeadlineSeconds: 3600\n  template:")
    assert lint(("j.yaml", bounded), rules={"gpu-job-bounds"}) == []
    sleeper = JOB.replace("args: [--model, m]", "command: [sleep, infinity]").replace(
        "        - name: client\n          image: bench\n          command: [python, bench.py]\n",
        "",
    )
    assert [f.line for f in lint(("j.yaml", sleeper), rules={"gpu-job-bounds"})] == [5]
    # a plain GPU job is not nagged about backoffLimit any more
    single = JOB.split("        - name: client", maxsplit=1)[0].replace(
        "          ports: [{containerPort: 8000}]\n", ""
    )
    assert lint(("j.yaml", single), rules={"gpu-job-bounds"}) == []


STOCK_TOOLKIT = """\
#accept-nvidia-visible-devices-as-volume-mounts = false
#accept-nvidia-visible-devices-envvar-when-unprivileged = true
disable-require = false

[nvidia-container-cli]
ldconfig = "@/sbin/ldconfig.real"
"""


def test_toolkit_default_points_at_the_commented_line() -> None:
    found = lint(("config.toml", STOCK_TOOLKIT), rules={"runtime-toolkit"})
    assert [(f.line, f.column) for f in found] == [(2, 1)]
    off = STOCK_TOOLKIT.replace(
        "#accept-nvidia-visible-devices-envvar-when-unprivileged = true",
        "accept-nvidia-visible-devices-envvar-when-unprivileged = false",
    )
    assert lint(("config.toml", off), rules={"runtime-toolkit"}) == []
