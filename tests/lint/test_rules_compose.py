"""Compose GPU reservations: failing forms with exact positions, a clean file, a fragment."""

from __future__ import annotations

from pathlib import Path

from gpuherd.lint.engine import LintOptions, lint_sources
from gpuherd.lint.model import Finding

FIXTURES = Path(__file__).parent / "fixtures"

BAD = """\
services:
  ollama:
    image: ollama/ollama
    deploy:
      resources:
        reservations:
          devices:
            - driver: nvidia
              count: 1
  plex:
    image: plexinc/pms-docker
    runtime: nvidia
    deploy:
      resources:
        limits:
          devices: [{driver: nvidia, count: 1, capabilities: [gpu]}]
        reservations:
          devices:
            - {driver: nvidia, count: 0, device_ids: ["0"], capabilities: [gpu, video, gpus]}
"""


def lint(text: str, name: str = "compose.yaml") -> list[Finding]:
    return lint_sources([(name, text)], LintOptions()).findings


def test_every_form_with_positions() -> None:
    assert [(f.line, f.column, f.severity, f.object, f.message) for f in lint(BAD)] == [
        (
            8,
            15,
            "error",
            "service=ollama",
            "a device reservation needs `capabilities`: Docker rejects it",
        ),
        (
            12,
            14,
            "info",
            "service=plex",
            "runtime: nvidia is the legacy form: it needs the runtime registered in daemon.json",
        ),
        (16, 11, "error", "service=plex", "devices are only allowed under reservations"),
        (19, 39, "error", "service=plex", "count 0 reserves no GPU"),
        (19, 42, "error", "service=plex", "count and device_ids cannot both be set"),
        (19, 75, "error", "service=plex", "unknown capabilities: gpus"),
        (
            19,
            75,
            "warning",
            "service=plex",
            "capabilities ['gpu', 'video', 'gpus'] become "
            "NVIDIA_DRIVER_CAPABILITIES=video: CUDA (compute) and "
            "nvidia-smi and NVML (utility) missing",
        ),
    ]


def test_clean_compose_file() -> None:
    path = FIXTURES / "clean-compose.yaml"
    assert lint(path.read_text(), str(path)) == []


def test_fragment_used_through_extends() -> None:
    fragment = (
        "image: blender\ndeploy:\n  resources:\n    reservations:\n      devices:\n"
        "        - {driver: nvidia, count: all}\n"
    )
    found = lint(fragment, "gpu-render.yml")
    assert [(f.line, f.column, f.object) for f in found] == [(6, 11, "service=gpu-render")]


def test_kubernetes_documents_are_not_compose() -> None:
    assert (
        lint("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {runtime: nvidia}\n")
        == []
    )
