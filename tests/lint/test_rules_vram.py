"""VRAM over-subscription on one GPU: seed 001's tenants, vLLM fractions, HAMi and KAI forms."""

from __future__ import annotations

from gpuherd.lint.engine import LintOptions, lint_sources
from gpuherd.lint.model import Finding
from gpuherd.spec.from_k8s import VramClaim, container_claim, workload_claim

NODE = """\
apiVersion: v1
kind: Node
metadata:
  name: homelabai
  labels: {nvidia.com/gpu.memory: "12288", nvidia.com/gpu.replicas: "8"}
status: {capacity: {nvidia.com/gpu.shared: "8"}}
"""


def deploy(
    name: str,
    *,
    annotations: str = "{}",
    args: str = "[]",
    image: str = "app",
    limits: str = "{nvidia.com/gpu.shared: 1}",
) -> str:
    return f"""\
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: ai}}
spec:
  strategy: {{type: Recreate}}
  template:
    metadata: {{annotations: {annotations}}}
    spec:
      nodeSelector: {{kubernetes.io/hostname: homelabai}}
      containers:
        - name: {name}
          image: {image}
          args: {args}
          resources: {{limits: {limits}}}
"""


def lint(text: str) -> list[Finding]:
    return lint_sources([("h.yaml", text)], LintOptions(select={"vram-oversubscribed"})).findings


SEED_001 = (
    NODE
    + deploy("vllm-server", image="vllm/vllm-openai", args='["--gpu-memory-utilization", "0.70"]')
    + deploy("ollama", annotations="{gpuherd.io/vram: 4GiB}")
    + deploy("whisper", annotations="{gpuherd.io/vram: 3GiB}")
    + deploy("plex", annotations="{gpuherd.io/vram: 2GiB}")
)


def test_seed_001_does_not_fit() -> None:
    (found,) = lint(SEED_001)
    assert (found.line, found.column, found.object) == (53, 1, "Deployment/ai/plex")
    assert found.message == (
        "workloads on homelabai declare 17.4 GiB of VRAM, the GPU has 12.0 GiB "
        "(Deployment/ai/vllm-server 8.4 GiB, Deployment/ai/ollama 4.0 GiB, "
        "Deployment/ai/whisper 3.0 GiB, Deployment/ai/plex 2.0 GiB): the last to allocate runs "
        "out of memory"
    )


def test_fits_when_vllm_is_lowered() -> None:
    lowered = SEED_001.replace('"0.70"', '"0.20"')
    assert lint(lowered) == []  # 2.4 + 4 + 3 + 2 = 11.4 GiB


def test_two_vllm_servers_over_one() -> None:
    text = deploy(
        "vllm-a", image="vllm/vllm-openai", args='["--gpu-memory-utilization", "0.7"]'
    ) + deploy("vllm-b", image="vllm/vllm-openai", args="[]")
    (found,) = lint(text)  # no Node in the input: fractions alone decide
    assert found.message.startswith(
        "vLLM servers on homelabai pre-allocate 1.60 of the GPU together"
    )


def test_claim_sources() -> None:
    assert container_claim({"resources": {"limits": {"nvidia.com/gpumem": 3000}}}) == VramClaim(
        3000 * 1024**2, None, "nvidia.com/gpumem: 3000"
    )
    assert container_claim(
        {"resources": {"limits": {"nvidia.com/gpumem-percentage": "25"}}}
    ) == VramClaim(None, 0.25, "nvidia.com/gpumem-percentage: 25")
    assert workload_claim({"gpu-memory": "2048"}, []) == VramClaim(
        2048 * 1024**2, None, "gpu-memory: 2048"
    )
    assert workload_claim({"gpu-fraction": "0.5"}, []) == VramClaim(None, 0.5, "gpu-fraction: 0.5")
    vllm = container_claim({"image": "vllm/vllm-openai", "args": ["--gpu-memory-utilization=0.5"]})
    assert vllm == VramClaim(None, 0.5, "--gpu-memory-utilization 0.5", vllm=True)
    assert container_claim({"image": "vllm/vllm-openai"}) == VramClaim(
        None, 0.9, "vLLM default --gpu-memory-utilization 0.9", vllm=True
    )
    assert container_claim({"image": "nginx"}) is None
