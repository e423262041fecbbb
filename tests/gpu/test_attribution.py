"""Attribution: cgroup path forms -> container/pod/unit, and tenant matching on a /proc tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuherd.gpu.attribution import Origin, PodInfo, attribute, origin_from_cgroup, read_origin
from gpuherd.gpu.base import GpuProcess, GpuSnapshot
from gpuherd.ids import GpuUuid
from gpuherd.spec import TenantName, parse_config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cgroup"
CID = "3f4e9c1b2a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f"
POD = "8a1c2f0e-5b7d-4c3e-9f10-2b3c4d5e6f70"


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("docker-v1-cgroupfs.txt", Origin(CID, "docker", None, None, None)),
        ("docker-v2-systemd.txt", Origin(CID, "docker", None, None, None)),
        (
            "k8s-containerd-v2-systemd-burstable.txt",
            Origin(CID, "containerd", POD, "Burstable", None),
        ),
        ("k3s-v2-cgroupfs-besteffort.txt", Origin(CID, None, POD, "BestEffort", None)),
        ("k8s-v1-cgroupfs-guaranteed.txt", Origin(CID, None, POD, "Guaranteed", None)),
        ("crio-v2-systemd-guaranteed.txt", Origin(CID, "cri-o", POD, "Guaranteed", None)),
        ("crio-conmon.txt", Origin(None, None, POD, "BestEffort", None)),
        ("podman-rootless-v2.txt", Origin(CID, "podman", None, None, "user@1000.service")),
        ("systemd-service-v2.txt", Origin(None, None, None, None, "ollama.service")),
        ("systemd-service-v1.txt", Origin(None, None, None, None, "ollama.service")),
        ("systemd-user-service-v2.txt", Origin(None, None, None, None, "comfyui.service")),
        ("container-namespaced-v2.txt", Origin()),
    ],
)
def test_cgroup_forms(fixture: str, expected: Origin) -> None:
    assert origin_from_cgroup((FIXTURES / fixture).read_text()) == expected


def _proc(root: Path, pid: int, *, ppid: int, cmdline: list[str], cgroup: str) -> None:
    d = root / "proc" / str(pid)
    d.mkdir(parents=True)
    # Field 2 (comm) may contain spaces and ')' - the parser must split after the last ')'.
    d.joinpath("stat").write_text(
        f"{pid} (py (worker)) S {ppid} " + " ".join(["0"] * 16) + f" {pid * 10} 0 0\n"
    )
    d.joinpath("cmdline").write_bytes(b"\0".join(c.encode() for c in cmdline) + b"\0")
    d.joinpath("cgroup").write_text((FIXTURES / cgroup).read_text())


def _gp(pid: int, gpu: int = 0) -> GpuProcess:
    return GpuProcess(gpu_index=gpu, gpu_uuid=GpuUuid("GPU-x"), pid=pid, used_bytes=1, cmdline=None)


CONFIG = """\
version: 1
tenants:
  ollama: {vram: 1GiB, match: {pid_file: /run/ollama.pid}}
  comfy: {vram: 1GiB, match: {systemd_unit: comfyui}}
  vllm: {vram: 1GiB, match: {pod: {namespace: ai-dev, labels: {app: vllm}}}}
  byuid: {vram: 1GiB, match: {pod: {uid: 8a1c2f0e-5b7d-4c3e-9f10-2b3c4d5e6f70}}}
  plex: {vram: 1GiB, match: {container: 3f4e9c1b2a8d}}
  whisper: {vram: 1GiB, match: {cmdline: "whisper-server --model", container: 3f4e9c1b2a8d}}
"""


def test_tenant_matching_on_fixture_tree(tmp_path: Path) -> None:
    root = tmp_path
    _proc(root, 100, ppid=1, cmdline=["/usr/bin/ollama", "serve"], cgroup="systemd-service-v2.txt")
    _proc(
        root, 101, ppid=100, cmdline=["/usr/bin/ollama", "runner"], cgroup="systemd-service-v2.txt"
    )
    _proc(root, 200, ppid=1, cmdline=["python", "main.py"], cgroup="systemd-user-service-v2.txt")
    _proc(
        root,
        300,
        ppid=1,
        cmdline=["vllm", "serve"],
        cgroup="k8s-containerd-v2-systemd-burstable.txt",
    )
    _proc(root, 400, ppid=1, cmdline=["Plex Transcoder"], cgroup="docker-v2-systemd.txt")
    _proc(root, 500, ppid=1, cmdline=["unknown"], cgroup="container-namespaced-v2.txt")
    (root / "run").mkdir()
    (root / "run" / "ollama.pid").write_text("100\n")
    config = parse_config(CONFIG, source="t.yaml")
    procs = tuple(
        GpuProcess(
            gpu_index=0,
            gpu_uuid=GpuUuid("GPU-x"),
            pid=pid,
            used_bytes=1,
            cmdline=tuple(
                (root / "proc" / str(pid) / "cmdline")
                .read_bytes()
                .rstrip(b"\0")
                .decode()
                .split("\0")
            ),
        )
        for pid in (100, 101, 200, 300, 400, 500)
    )
    snap = GpuSnapshot(backend="test", taken_at=0.0, devices=(), processes=procs)
    pods = {POD: PodInfo("ai-dev", "vllm-server-7d9f", {"app": "vllm", "tier": "dev"})}
    result = {
        a.process.pid: a.tenant for a in attribute(snap, config.tenants, root=root, pods=pods)
    }
    assert result == {
        100: "ollama",  # the pid in the pid file
        101: "ollama",  # its child runner, found through /proc/101/stat's ppid
        200: "comfy",  # systemd_unit without suffix means .service
        300: "vllm",  # pod labels come from the Kubernetes PodInfo
        400: "plex",  # container id prefix; whisper's cmdline does not match
        500: None,
    }
    # Without pod information, a namespace/label match cannot hold, but a UID match can.
    no_pods = {a.process.pid: a.tenant for a in attribute(snap, config.tenants, root=root)}
    assert no_pods[300] == "byuid"


def test_read_origin_of_missing_pid_is_empty(tmp_path: Path) -> None:
    assert read_origin(12345, tmp_path) == Origin()


def test_first_matching_tenant_wins(tmp_path: Path) -> None:
    _proc(tmp_path, 7, ppid=1, cmdline=["ollama", "serve"], cgroup="systemd-service-v2.txt")
    config = parse_config(
        "version: 1\ntenants:\n  a: {vram: 1GiB, match: {systemd_unit: ollama.service}}\n"
        "  b: {vram: 1GiB, match: {systemd_unit: ollama}}\n",
        source="t.yaml",
    )
    snap = GpuSnapshot(backend="t", taken_at=0.0, devices=(), processes=(_gp(7),))
    assert attribute(snap, config.tenants, root=tmp_path)[0].tenant == TenantName("a")
