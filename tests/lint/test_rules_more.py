"""Seed 000's render, capability heuristics, CDI annotations and local volumes."""

from __future__ import annotations

from pathlib import Path

from gpuherd.lint.engine import LintOptions, lint_sources
from gpuherd.lint.model import Finding

SEED_000 = (Path(__file__).parent / "fixtures" / "seed000-mapshot.yaml").read_text()


def lint(text: str, rules: set[str] | None = None) -> list[Finding]:
    return lint_sources([("s.yaml", text)], LintOptions(select=rules)).findings


def test_seed_000_every_finding() -> None:
    assert [(f.rule, f.line, f.column, f.severity) for f in lint(SEED_000)] == [
        ("pv-node", 17, 20, "warning"),  # local-path binding Immediate
        ("cdi", 45, 41, "error"),
        ("capabilities", 50, 15, "warning"),
        ("pv-node", 57, 50, "error"),
    ]
    by_rule = {f.rule + str(f.line): f for f in lint(SEED_000)}
    assert by_rule["pv-node57"].message == (
        "claim mapshot-data is bound to pvc-1234 on k3s-cp-01, but the pod can only run on "
        "k3s-gpu-01: it stays Pending"
    )
    assert by_rule["capabilities50"].message == (
        "NVIDIA_DRIVER_CAPABILITIES is unset (utility,compute) but the container needs graphics "
        "('xvfb')"
    )


def test_seed_000_fixed() -> None:
    fixed = (
        SEED_000.replace("values: [k3s-cp-01]", "values: [k3s-gpu-01]")
        .replace("volumeBindingMode: Immediate", "volumeBindingMode: WaitForFirstConsumer")
        .replace('annotations: {cdi.k8s.io/gpu: "nvidia.com/gpu=all"}', "annotations: {}")
        .replace(
            "              command: [xvfb-run, factorio]",
            "              command: [xvfb-run, factorio]\n"
            "              env: [{name: NVIDIA_DRIVER_CAPABILITIES, value: 'compute,utility,graphics'}]",
        )
    )
    assert lint(fixed) == []


def container(env: str = "", image: str = "jellyfin/jellyfin", extra: str = "") -> str:
    return (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n"
        f"    - name: c\n      image: {image}\n{env}{extra}"
        "      resources: {limits: {nvidia.com/gpu: 1}}\n"
    )


def caps(value: str) -> str:
    return f"      env: [{{name: NVIDIA_DRIVER_CAPABILITIES, value: '{value}'}}]\n"


def test_capabilities_heuristics() -> None:
    found = lint(container(caps("compute,utility")), {"capabilities"})
    assert [(f.line, f.column, f.message) for f in found] == [
        (
            8,
            55,
            "NVIDIA_DRIVER_CAPABILITIES is compute,utility but the container needs video "
            "('jellyfin')",
        )
    ]
    assert lint(container(caps("compute,video,utility")), {"capabilities"}) == []
    # [gpu, video]-style lists drop compute and utility: a CUDA image then lacks both.
    cuda = lint(container(caps("video"), image="nvidia/cuda:12.4.1-runtime"), {"capabilities"})
    assert cuda[0].message == (
        "NVIDIA_DRIVER_CAPABILITIES is video but the container needs compute "
        "('cuda'), utility ('cuda')"
    )
    display = lint(
        container(
            caps("all"), extra="      volumeMounts: [{name: x, mountPath: /tmp/.X11-unix}]\n"
        ),
        {"capabilities"},
    )
    assert display == []
    x11 = lint(
        container(
            caps("compute,utility,graphics"),
            image="kasmweb/desktop",
            extra="      volumeMounts: [{name: x, mountPath: /tmp/.X11-unix}]\n",
        ),
        {"capabilities"},
    )
    assert "display ('a /tmp/.X11-unix mount')" in x11[0].message
    unknown = lint(container(caps("compute,gpu")), {"capabilities"})
    assert [(f.severity, f.message) for f in unknown] == [
        ("error", "NVIDIA_DRIVER_CAPABILITIES has unknown token(s): gpu")
    ]


def test_cdi_names() -> None:
    pod = (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {cdi.k8s.io/x: ANN}\n"
        "spec:\n  containers: [{name: c, image: i, resources: {limits: {nvidia.com/gpu: 1}}}]\n"
    )
    assert lint(pod.replace("ANN", '"nvidia.com/gpu=0"'), {"cdi"}) == []
    assert [
        f.message for f in lint(pod.replace("ANN", '"nvidia.com/gpu=0,nvidia.com/gpu=1"'), {"cdi"})
    ] == ["cdi.k8s.io/x injects 2 GPU(s) while the pod requests 1: the scheduler does not see them"]
    assert [f.message for f in lint(pod.replace("ANN", '"gpu0"'), {"cdi"})] == [
        "malformed CDI device name(s): gpu0"
    ]
