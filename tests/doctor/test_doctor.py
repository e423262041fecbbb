"""`gpuherd doctor` on captured trees: one per failure mode, exact verdicts and statuses."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from gpuherd.doctor.model import Report
from gpuherd.doctor.run import run_doctor
from tests.conftest import gpuherd_argv
from tests.doctor.trees import UUID, Tree, healthy_container, healthy_host


def statuses(report: Report) -> dict[str, str]:
    return {c.id: c.status for c in report.checks}


def check(report: Report, check_id: str) -> tuple[str, str, str | None]:
    (found,) = [c for c in report.checks if c.id == check_id]
    return found.status, found.message, found.fix


def test_healthy_host(tmp_path: Path) -> None:
    healthy_host(tmp_path)
    report = run_doctor(root=tmp_path)
    assert report.mode == "host"
    assert statuses(report) == {
        "device-nodes": "ok",
        "kernel-driver": "ok",
        "user-libs": "ok",
        "nvml": "skip",
        "env-visible-devices": "skip",
        "env-capabilities": "skip",
        "cuda-compat": "skip",
        "gl-vendor": "skip",
        "egl-probe": "skip",
        "toolkit": "ok",
        "toolkit-config": "ok",
        "docker-daemon": "ok",
        "cdi": "skip",
        "nvml-health": "skip",
        "ecs-agent": "skip",
    }
    assert report.verdict == "ready"
    assert (
        report.headline == "GPU ready: 1x NVIDIA GeForce RTX 3080 Ti, driver 550.54.14, CUDA 12.4"
    )


def test_healthy_container(tmp_path: Path) -> None:
    healthy_container(tmp_path)
    report = run_doctor(root=tmp_path)
    assert report.mode == "container"
    assert report.mode_evidence == ["/.dockerenv exists"]
    assert statuses(report) == {
        "device-nodes": "ok",
        "kernel-driver": "ok",
        "user-libs": "ok",
        "nvml": "skip",
        "env-visible-devices": "ok",
        "env-capabilities": "ok",
        "cuda-compat": "ok",
        "gl-vendor": "skip",
        "egl-probe": "skip",
        "kubernetes": "skip",
    }
    assert report.verdict == "ready"
    assert check(report, "cuda-compat")[1] == "image CUDA 12.4 <= driver's CUDA 12.4"


def test_container_without_devices_but_visible_all(tmp_path: Path) -> None:
    """A CUDA image (NVIDIA_VISIBLE_DEVICES=all) started by plain runc."""
    Tree(tmp_path).file(".dockerenv").env(NVIDIA_VISIBLE_DEVICES="all", CUDA_VERSION="12.4.1")
    report = run_doctor(root=tmp_path)
    assert statuses(report) == {
        "device-nodes": "fail",
        "kernel-driver": "fail",
        "user-libs": "fail",
        "nvml": "skip",
        "env-visible-devices": "ok",
        "env-capabilities": "ok",
        "cuda-compat": "skip",
        "gl-vendor": "skip",
        "egl-probe": "skip",
        "kubernetes": "skip",
    }
    _status, message, fix = check(report, "device-nodes")
    assert message == (
        "NVIDIA_VISIBLE_DEVICES=all asks for GPUs but the container runtime "
        "injected none: it was started by plain runc"
    )
    assert fix is not None
    assert "--gpus all" in fix
    assert report.verdict == "not-ready"
    assert report.headline == "GPU NOT ready: 3 problems"


def test_driver_library_mismatch(tmp_path: Path) -> None:
    healthy_host(tmp_path).libs("550.67")
    report = run_doctor(root=tmp_path)
    status, message, fix = check(report, "user-libs")
    assert status == "fail"
    assert message == (
        "driver/library version mismatch: kernel module 550.54.14, "
        "libnvidia-ml 550.67, libcuda 550.67; NVML and CUDA refuse to start"
    )
    assert fix is not None
    assert "reboot" in fix
    assert report.verdict == "not-ready"


def test_no_graphics_capability_while_xvfb_installed(tmp_path: Path) -> None:
    healthy_container(tmp_path).file("usr/bin/Xvfb", "", 0o755).mesa_egl()
    report = run_doctor(root=tmp_path)
    status, message, fix = check(report, "env-capabilities")
    assert status == "fail"
    assert message.startswith(
        "NVIDIA_DRIVER_CAPABILITIES=compute,utility lacks graphics "
        "(graphics: /usr/bin/Xvfb is installed)"
    )
    assert fix == "set NVIDIA_DRIVER_CAPABILITIES=compute,graphics,utility (or all)"
    assert check(report, "gl-vendor")[0] == "fail"
    assert report.verdict == "not-ready"


def test_only_mesa_egl_vendor(tmp_path: Path) -> None:
    healthy_container(tmp_path, NVIDIA_DRIVER_CAPABILITIES="all").mesa_egl()
    report = run_doctor(root=tmp_path, need={"compute", "utility", "graphics"})
    status, message, _fix = check(report, "gl-vendor")
    assert status == "fail"
    assert message.startswith(
        "only Mesa's EGL vendor (50_mesa.json) is present: rendering falls "
        "back to llvmpipe on the CPU"
    )
    assert check(report, "env-capabilities")[0] == "ok"
    # With the NVIDIA vendor files mounted, the same container is ready.
    Tree(tmp_path).nvidia_egl()
    assert check(run_doctor(root=tmp_path, need={"graphics"}), "gl-vendor")[0] == "ok"


def test_runtime_loop(tmp_path: Path) -> None:
    """Seed 003: runtimes points at a runc wrapper that calls nvidia-container-runtime."""
    healthy_host(tmp_path)
    tree = Tree(tmp_path)
    tree.file(
        "usr/local/bin/runc-gpu-wrapper",
        "#!/bin/bash\n# inject NVIDIA_VISIBLE_DEVICES=all\n"
        'exec /usr/bin/nvidia-container-runtime "$@"\n',
        0o755,
    )
    tree.link("opt/concourse/bin/runc", "/usr/local/bin/runc-gpu-wrapper")
    (tmp_path / "etc/nvidia-container-runtime/config.toml").write_text(
        "accept-nvidia-visible-devices-envvar-when-unprivileged = false\n"
        '[nvidia-container-runtime]\nruntimes = ["/opt/concourse/bin/runc"]\n'
    )
    report = run_doctor(root=tmp_path)
    status, message, fix = check(report, "toolkit-config")
    assert status == "fail"
    assert message == (
        "/etc/nvidia-container-runtime/config.toml: runtimes[0] = '/opt/concourse/bin/runc' "
        "resolves back to the nvidia runtime (/usr/local/bin/runc-gpu-wrapper is a script that "
        "runs nvidia-container-runtime): every container start calls itself in a loop"
    )
    assert fix is not None
    assert "runc.real" in fix
    # Pointing it at the real runc fixes it.
    tree.file("opt/concourse/bin/runc.real", "\x7fELF", 0o755)
    (tmp_path / "etc/nvidia-container-runtime/config.toml").write_text(
        "accept-nvidia-visible-devices-envvar-when-unprivileged = false\n"
        '[nvidia-container-runtime]\nruntimes = ["/opt/concourse/bin/runc.real"]\n'
    )
    assert check(run_doctor(root=tmp_path), "toolkit-config")[0] == "ok"


def test_envvar_unprivileged_default_is_a_warning(tmp_path: Path) -> None:
    healthy_host(tmp_path)
    (tmp_path / "etc/nvidia-container-runtime/config.toml").write_text("")
    report = run_doctor(root=tmp_path)
    assert check(report, "toolkit-config")[0] == "warn"
    assert report.verdict == "degraded"
    assert report.headline.endswith("(1 warning)")


def test_daemon_json_default_runtime_without_runtime(tmp_path: Path) -> None:
    healthy_host(tmp_path).file("etc/docker/daemon.json", '{"default-runtime": "nvidia"}')
    status, message, fix = check(run_doctor(root=tmp_path), "docker-daemon")
    assert status == "fail"
    assert message == (
        "/etc/docker/daemon.json: default-runtime is 'nvidia' but no runtime of "
        "that name is registered under `runtimes`: dockerd refuses to start; also: "
        "nvidia is the default runtime: every container can see GPUs by setting "
        "NVIDIA_VISIBLE_DEVICES, even without --gpus"
    )
    assert fix is not None
    assert "nvidia-ctk runtime configure --runtime=docker" in fix


def test_daemon_json_runtime_path_typo(tmp_path: Path) -> None:
    healthy_host(tmp_path).file(
        "etc/docker/daemon.json",
        '{"runtimes": {"nvidia": {"path": "/usr/bin/nvidia-contianer-runtime"}}}',
    )
    status, message, _fix = check(run_doctor(root=tmp_path), "docker-daemon")
    assert status == "fail"
    assert "'/usr/bin/nvidia-contianer-runtime', which does not exist" in message


def test_cuda_newer_than_driver(tmp_path: Path) -> None:
    healthy_container(tmp_path)
    (tmp_path / "proc/driver/nvidia/version").write_text(
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.54.03  Tue Jun  6 22:20:39 UTC 2023\n"
    )
    Tree(tmp_path).libs("535.54.03")
    status, message, _fix = check(run_doctor(root=tmp_path), "cuda-compat")
    assert status == "fail"
    assert message == (
        "the image needs CUDA 12.4 (NVIDIA_REQUIRE_CUDA=cuda>=12.4); driver "
        "535.54.03 supports up to CUDA 12.2"
    )


def test_kubernetes_pod_without_gpu_request(tmp_path: Path) -> None:
    Tree(tmp_path).env(KUBERNETES_SERVICE_HOST="10.43.0.1", NVIDIA_VISIBLE_DEVICES="all")
    report = run_doctor(root=tmp_path)
    assert report.mode == "container"
    status, message, fix = check(report, "kubernetes")
    assert status == "fail"
    assert message == "NVIDIA_VISIBLE_DEVICES=all (set by the image) but the pod got no GPU"
    assert fix is not None
    assert "runtimeClassName: nvidia" in fix


def test_kubernetes_pod_with_allocated_gpu(tmp_path: Path) -> None:
    healthy_container(tmp_path, KUBERNETES_SERVICE_HOST="10.43.0.1")
    assert check(run_doctor(root=tmp_path), "kubernetes")[0] == "ok"


def test_visible_devices_syntax(tmp_path: Path) -> None:
    healthy_container(tmp_path, NVIDIA_VISIBLE_DEVICES=f"all,{UUID}")
    status, message, _ = check(run_doctor(root=tmp_path), "env-visible-devices")
    assert status == "fail"
    assert "cannot be mixed" in message


def test_unknown_capability(tmp_path: Path) -> None:
    healthy_container(tmp_path, NVIDIA_DRIVER_CAPABILITIES="compute,utility,gpu")
    status, message, _ = check(run_doctor(root=tmp_path), "env-capabilities")
    assert (status, message) == ("fail", "NVIDIA_DRIVER_CAPABILITIES has unknown token(s): gpu")


def test_missing_uvm(tmp_path: Path) -> None:
    healthy_host(tmp_path)
    (tmp_path / "dev/nvidia-uvm").unlink()
    status, message, fix = check(run_doctor(root=tmp_path), "device-nodes")
    assert (status, message) == ("fail", "missing /dev/nvidia-uvm")
    assert fix is not None
    assert "nvidia-modprobe -u" in fix


def test_ecs_agent_without_gpu_support(tmp_path: Path) -> None:
    healthy_host(tmp_path).file("etc/ecs/ecs.config", "ECS_CLUSTER=render\n")
    assert check(run_doctor(root=tmp_path), "ecs-agent")[0] == "fail"
    Tree(tmp_path).file("etc/ecs/ecs.config", "ECS_CLUSTER=render\nECS_ENABLE_GPU_SUPPORT=true\n")
    assert check(run_doctor(root=tmp_path), "ecs-agent")[0] == "ok"


def test_k3s_containerd_template_and_cdi(tmp_path: Path) -> None:
    healthy_host(
        tmp_path,
    ).devices(2)
    Tree(tmp_path).file(
        "var/lib/rancher/k3s/agent/etc/containerd/config.toml.tmpl",
        '{{ template "base" . }}\n\n'
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes."nvidia"]\n'
        '  runtime_type = "io.containerd.runc.v2"\n'
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes."nvidia".options]\n'
        '  BinaryName = "/usr/bin/nvidia-container-runtime"\n',
    ).file(
        "etc/cdi/nvidia.yaml",
        "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n  - name: '0'\n  - name: all\n",
    )
    report = run_doctor(root=tmp_path)
    assert check(report, "containerd")[0] == "ok"
    status, message, _ = check(report, "cdi")
    assert (status, message) == (
        "warn",
        "/etc/cdi/nvidia.yaml lists 1 GPU(s), the host has 2: the spec is stale",
    )


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        gpuherd_argv("doctor", *args),
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_cli_json_and_exit_codes(tmp_path: Path) -> None:
    healthy_container(tmp_path)
    result = run_cli("--root", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["version"], data["mode"], data["verdict"]) == (1, "container", "ready")
    assert {"id", "status", "message", "fix", "evidence"} <= set(data["checks"][0])
    (tmp_path / "dev/nvidia0").unlink()
    result = run_cli("--root", str(tmp_path))
    assert result.returncode == 1
    assert "fail  device-nodes" in result.stdout
    assert result.stdout.rstrip().endswith("GPU NOT ready: 1 problem")


def test_cli_usage_errors(tmp_path: Path) -> None:
    assert run_cli("--need", "compute,teleport").returncode == 2
    assert run_cli("--host", "--container").returncode == 2
    assert run_cli("--root", str(tmp_path / "missing")).returncode == 2


def test_forced_mode(tmp_path: Path) -> None:
    healthy_host(tmp_path)
    report = run_doctor(root=tmp_path, mode="container")
    assert report.mode == "container"
    assert "toolkit" not in statuses(report)


def test_probe_on_this_machine_names_the_renderer() -> None:
    """A real EGL context where libEGL exists; without it, a clear failure. Never a traceback."""
    result = run_cli("--probe", "--format", "json")
    assert result.returncode in (0, 1), result.stderr
    probe = next(c for c in json.loads(result.stdout)["checks"] if c["id"] == "egl-probe")
    if probe["message"].startswith("EGL probe failed"):
        assert probe["status"] == "fail"
    else:
        renderer = probe["evidence"]["gl_renderer"]
        assert probe["message"].startswith(f"OpenGL renders on {renderer}")
        assert probe["status"] == ("ok" if "nvidia" in renderer.lower() else "fail")


@pytest.mark.parametrize("mode", [[], ["--host"], ["--container"]])
def test_live_run_never_raises(mode: list[str]) -> None:
    result = run_cli(*mode, "--format", "json")
    assert result.returncode in (0, 1), result.stderr
    assert "Traceback" not in result.stderr
    data = json.loads(result.stdout)
    assert data["verdict"] in ("ready", "degraded", "not-ready")
    assert (data["verdict"] == "ready") == (result.returncode == 0)


def test_host_with_nvml(tmp_path: Path) -> None:
    """The NVML checks and summary, through the fake binding (a GeForce: ECC unsupported)."""
    from tests.gpu.fake_nvml import FakeNvml

    healthy_host(tmp_path)
    lib = FakeNvml(unsupported=frozenset({"nvmlDeviceGetTotalEccErrors", "nvmlDeviceGetMigMode"}))
    report = run_doctor(root=tmp_path, nvml_lib=lib)
    assert check(report, "nvml")[:2] == ("ok", "NVML sees 1 GPU(s): 0: NVIDIA GeForce RTX 3080 Ti")
    assert check(report, "nvml-health")[0] == "ok"
    assert report.headline == (
        "GPU ready: 1x NVIDIA GeForce RTX 3080 Ti (12 GiB), driver 550.54.14, CUDA 12.4"
    )
    lib = FakeNvml()
    lib.data["devices"][0].update(persistence_mode=0, uncorrected_ecc=3)
    status, message, fix = check(run_doctor(root=tmp_path, nvml_lib=lib), "nvml-health")
    assert status == "warn"
    assert message == (
        "GPU 0: persistence mode off (slow first use; cuda-checkpoint needs it); "
        "GPU 0: 3 uncorrected ECC errors since boot"
    )
    assert fix is not None
    assert "nvidia-smi -pm 1" in fix


def test_nvml_failure_is_a_failed_check(tmp_path: Path) -> None:
    import pynvml

    from tests.gpu.fake_nvml import FakeNvml

    healthy_host(tmp_path)
    lib = FakeNvml(init_error=pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH)
    report = run_doctor(root=tmp_path, nvml_lib=lib)
    status, message, _ = check(report, "nvml")
    assert (status, message) == (
        "fail",
        "driver/library version mismatch: the user-space NVIDIA "
        "driver does not match the loaded kernel module",
    )
    assert check(report, "nvml-health")[0] == "skip"
