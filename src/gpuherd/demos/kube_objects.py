"""The cast of `gpuherd demo --kubernetes`, as the manifests a user would apply.

From the field report behind the Kubernetes mode: k3s-gpu-01 (an RTX 4000 Ada, 20 GiB) runs
Ollama and Frigate; the nightly mapshot render needs more VRAM than is left, and its data lives
on a local-path volume of that node, so it is pinned there. k3s-gpu-02 runs Whisper, which a
broker acting on the wrong node would take for a lower-priority tenant.

Every pod runs gpuherd's simulated programs on the GPU the device plugin gave it:
`gpuherd sim app ollama` (a model loaded, the Ollama API on the pod's IP) and `gpuherd sim hold`.
"""

from __future__ import annotations

import sys
from typing import Any

Obj = dict[str, Any]

RENDER_NODE, OTHER_NODE = "k3s-gpu-01", "k3s-gpu-02"
GPUS = (  # node, the GPU's name, its memory; GPU i belongs to node i
    (RENDER_NODE, "NVIDIA RTX 4000 Ada Generation", "20GiB"),
    (OTHER_NODE, "NVIDIA GeForce RTX 3060", "12GiB"),
)
TIME_SLICES = 4  # the device plugin's time-slicing: pods share each card's nvidia.com/gpu
NAMESPACES = ("ollama", "nvr", "speech", "mapshot")
MODEL, MODEL_VRAM = "qwen2.5:14b", "10GiB"
RENDER_VRAM, RENDER_FOR = "12GiB", "3s"
RENDER_PRIORITY = 50
CRONJOB, JOB = "nightly-render", "nightly-render-manual"
JOB_NAMESPACE = "mapshot"
HOSTNAME = "kubernetes.io/hostname"


def gpuherd(*args: str) -> list[str]:
    """`gpuherd ARGS` as this interpreter runs it (a pod's command, a subprocess)."""
    return [sys.executable, "-m", "gpuherd", *args]


def quantity(size: str) -> str:
    """`12GiB` as Kubernetes writes it: `12Gi`."""
    return size.replace("GiB", "Gi")


def namespace(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def _hold(vram: str, name: str, seconds: str | None = None) -> list[str]:
    """A pod command holding `vram` on the GPU the device plugin gave the pod."""
    argv = gpuherd("sim", "hold", "--gpu", "$(CUDA_VISIBLE_DEVICES)", "--vram", vram)
    argv += ["--name", name]
    return [*argv, "--for", seconds] if seconds else argv


def _deployment(
    ns: str,
    name: str,
    node: str,
    command: list[str],
    annotations: dict[str, str],
    *,
    image: str,
    port: int | None = None,
) -> Obj:
    container: Obj = {
        "name": name,
        "image": image,
        "command": command,
        "resources": {"limits": {"nvidia.com/gpu": "1"}},
    }
    if port is not None:
        container["ports"] = [{"name": "http", "containerPort": port}]
        container["readinessProbe"] = {
            "httpGet": {"path": "/api/ps", "port": "http"},
            "periodSeconds": 1,
        }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations},
        "spec": {
            "replicas": 1,
            # The old pod must give the GPU back before the new one starts: a rolling update
            # deadlocks on a full card.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [container],
                    "nodeSelector": {HOSTNAME: node},
                    "terminationGracePeriodSeconds": 5,
                },
            },
        },
    }


def tenants() -> list[Obj]:
    """Ollama (priority 10, released by scaling to zero), Frigate (80: above the render, never
    touched) on k3s-gpu-01; Whisper (20) on k3s-gpu-02."""
    serve = gpuherd("sim", "app", "ollama", f"{MODEL}={MODEL_VRAM}", "--host", "$(POD_IP)")
    ollama = _deployment(
        "ollama",
        "ollama",
        RENDER_NODE,
        [*serve, "--port", "11434"],
        {
            "gpuherd.io/vram": quantity(MODEL_VRAM),
            "gpuherd.io/priority": "10",
            "gpuherd.io/preempt": "kubernetes",
        },
        image="ollama/ollama:0.5.7",
        port=11434,
    )
    frigate = _deployment(
        "nvr",
        "frigate",
        RENDER_NODE,
        _hold("3GiB", "frigate"),
        {"gpuherd.io/vram": "3Gi", "gpuherd.io/priority": "80"},
        image="ghcr.io/blakeblackshear/frigate:0.14.1-tensorrt",
    )
    whisper = _deployment(
        "speech",
        "whisper",
        OTHER_NODE,
        _hold("3GiB", "whisper"),
        {
            "gpuherd.io/vram": "3Gi",
            "gpuherd.io/priority": "20",
            "gpuherd.io/preempt": "kubernetes",
        },
        image="onerahmet/openai-whisper-asr-webservice:v1.5.0-gpu",
    )
    return [ollama, frigate, whisper]


def cronjob() -> Obj:
    """The nightly render: its Jobs are born suspended and queued for gpuherd's brokers."""
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": CRONJOB, "namespace": JOB_NAMESPACE},
        "spec": {
            "schedule": "0 3 * * *",
            "concurrencyPolicy": "Forbid",
            "jobTemplate": {
                "metadata": {
                    "labels": {"gpuherd.io/queue": "gpu"},
                    "annotations": {
                        "gpuherd.io/vram": quantity(RENDER_VRAM),
                        "gpuherd.io/priority": str(RENDER_PRIORITY),
                    },
                },
                "spec": {
                    "suspend": True,  # the broker of the node it lands on starts it
                    "backoffLimit": 0,
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            # Its local-path volume lives on this node (the report's lesson).
                            "nodeSelector": {HOSTNAME: RENDER_NODE},
                            "containers": [
                                {
                                    "name": "render",
                                    "image": "martydingo/mapshot:latest",
                                    "command": _hold(RENDER_VRAM, "mapshot", RENDER_FOR),
                                    "resources": {"limits": {"nvidia.com/gpu": "1"}},
                                }
                            ],
                        }
                    },
                },
            },
        },
    }


def job_from(made: Obj, name: str) -> Obj:
    """What `kubectl create job NAME --from=cronjob/CRONJOB` creates from the CronJob `made`
    (as the API server returned it: with its uid)."""
    template = made["spec"]["jobTemplate"]
    meta = template.get("metadata") or {}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": made["metadata"]["namespace"],
            "labels": dict(meta.get("labels") or {}),
            "annotations": {
                "cronjob.kubernetes.io/instantiate": "manual",
                **(meta.get("annotations") or {}),
            },
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "CronJob",
                    "name": made["metadata"]["name"],
                    "uid": made["metadata"]["uid"],
                    "controller": True,
                }
            ],
        },
        "spec": template["spec"],
    }


def excerpt(cj: Obj) -> Obj:
    """The lines of the CronJob that make it gpuherd's, for the narrative."""
    template = cj["spec"]["jobTemplate"]
    return {
        "schedule": cj["spec"]["schedule"],
        "jobTemplate": {
            "metadata": template["metadata"],
            "spec": {
                "suspend": template["spec"]["suspend"],
                "template": {
                    "spec": {"nodeSelector": template["spec"]["template"]["spec"]["nodeSelector"]}
                },
            },
        },
    }
