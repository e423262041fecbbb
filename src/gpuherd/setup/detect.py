"""What is on this host: which container engines, whether the NVIDIA toolkit is installed, whether
the GPU Operator owns the wiring, and how to install the toolkit on this distribution."""

from __future__ import annotations

import glob
import shlex
from dataclasses import dataclass

from gpuherd.runtimecfg.base import Root
from gpuherd.setup.model import ENGINES, Engine

TOOLKIT_BINARY = "nvidia-container-runtime"
# Where the GPU Operator's toolkit DaemonSet installs its copy of the toolkit on the host.
OPERATOR_TOOLKIT_DIR = "/usr/local/nvidia/toolkit"


def detect_engines(root: Root) -> list[Engine]:
    found: list[Engine] = []
    if (root / "etc/docker").is_dir() or root.which("dockerd") is not None:
        found.append("docker")
    if (root / "etc/containerd/config.toml").exists():
        found.append("containerd")
    if (root / "var/lib/rancher/k3s/agent/etc/containerd").is_dir() or root.which("k3s"):
        found.append("k3s")
    if (root / "var/lib/rancher/rke2/agent/etc/containerd").is_dir() or (
        root / "etc/rancher/rke2"
    ).is_dir():
        found.append("rke2")
    if (root / "var/snap/microk8s/current/args").is_dir():
        found.append("microk8s")
    return [e for e in ENGINES if e in found]


def toolkit_binary(root: Root) -> str | None:
    """The nvidia runtime's path as the daemons will be told it (absolute, found on PATH)."""
    return root.which(TOOLKIT_BINARY)


def operator_evidence(root: Root) -> list[str]:
    """Signs that the GPU Operator's toolkit DaemonSet installed and owns the runtime wiring."""
    evidence = []
    if root.resolve(f"{OPERATOR_TOOLKIT_DIR}/{TOOLKIT_BINARY}") is not None:
        evidence.append(f"{OPERATOR_TOOLKIT_DIR}/{TOOLKIT_BINARY} exists (operator's toolkit)")
    if (root / "run/nvidia/validations").is_dir():
        evidence.append("/run/nvidia/validations exists (operator's validator)")
    for path in (
        "/etc/containerd/config.toml",
        "/etc/docker/daemon.json",
        "/var/lib/rancher/k3s/agent/etc/containerd/config.toml",
        "/var/lib/rancher/rke2/agent/etc/containerd/config.toml",
        "/var/snap/microk8s/current/args/containerd-template.toml",
    ):
        text = root.read_text(path) or ""
        if OPERATOR_TOOLKIT_DIR in text:
            evidence.append(f"{path} points at {OPERATOR_TOOLKIT_DIR}")
    return evidence


@dataclass(frozen=True, slots=True)
class Distro:
    id: str
    pretty: str
    family: str  # apt, dnf, yum, zypper, pacman, unknown


def read_os_release(root: Root) -> Distro:
    text = root.read_text("/etc/os-release") or root.read_text("/usr/lib/os-release") or ""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            try:
                parts = shlex.split(value)
            except ValueError:
                parts = [value.strip("\"'")]
            fields[key.strip()] = parts[0] if parts else ""
    ids = [fields.get("ID", "").lower(), *fields.get("ID_LIKE", "").lower().split()]
    family = "unknown"
    for word in ids:
        if word in ("debian", "ubuntu"):
            family = "apt"
        elif word == "amzn":  # Amazon Linux 2 has yum, 2023 and later dnf
            family = "yum" if fields.get("VERSION_ID") == "2" else "dnf"
        elif word in ("rhel", "centos", "fedora", "rocky", "almalinux", "ol"):
            family = "dnf"
        elif word in ("sles", "suse", "opensuse", "opensuse-leap", "opensuse-tumbleweed"):
            family = "zypper"
        elif word in ("arch", "manjaro"):
            family = "pacman"
        if family != "unknown":
            break
    return Distro(ids[0] or "unknown", fields.get("PRETTY_NAME", ids[0] or "unknown"), family)


_REPO = "https://nvidia.github.io/libnvidia-container"
_KEYRING = "/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg"
# Package sources a package manager would install the toolkit from, per family.
_SOURCES = {
    "apt": "/etc/apt/sources.list.d/*nvidia-container-toolkit*.list",
    "dnf": "/etc/yum.repos.d/nvidia-container-toolkit.repo",
    "yum": "/etc/yum.repos.d/nvidia-container-toolkit.repo",
    "zypper": "/etc/zypp/repos.d/nvidia-container-toolkit*.repo",
}


def install_steps(distro: Distro) -> list[str]:
    """The commands NVIDIA's install guide gives for this distribution family."""
    if distro.family == "apt":
        return [
            f"curl -fsSL {_REPO}/gpgkey | sudo gpg --dearmor -o {_KEYRING}",
            f"curl -fsSL {_REPO}/stable/deb/nvidia-container-toolkit.list | sed "
            f"'s#deb https://#deb [signed-by={_KEYRING}] https://#g' | sudo tee "
            "/etc/apt/sources.list.d/nvidia-container-toolkit.list",
            "sudo apt-get update && sudo apt-get install -y nvidia-container-toolkit",
        ]
    if distro.family in ("dnf", "yum"):
        return [
            f"curl -fsSL {_REPO}/stable/rpm/nvidia-container-toolkit.repo | sudo tee "
            "/etc/yum.repos.d/nvidia-container-toolkit.repo",
            f"sudo {distro.family} install -y nvidia-container-toolkit",
        ]
    if distro.family == "zypper":
        return [
            f"sudo zypper ar {_REPO}/stable/rpm/nvidia-container-toolkit.repo",
            "sudo zypper --gpg-auto-import-keys install -y nvidia-container-toolkit",
        ]
    if distro.family == "pacman":
        return ["sudo pacman -S --needed nvidia-container-toolkit"]
    return [
        "install nvidia-container-toolkit as NVIDIA's guide describes for your distribution: "
        "https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/"
        "install-guide.html"
    ]


def install_command(root: Root, distro: Distro) -> list[str] | None:
    """The package-manager command, only where a package source for the toolkit is configured."""
    if distro.family == "pacman":  # in Arch's own repository
        return ["pacman", "-S", "--needed", "--noconfirm", "nvidia-container-toolkit"]
    pattern = _SOURCES.get(distro.family)
    if pattern is None or not glob.glob(str(root / pattern)):
        return None
    if distro.family == "apt":
        return ["apt-get", "install", "-y", "nvidia-container-toolkit"]
    if distro.family == "zypper":
        return ["zypper", "--non-interactive", "install", "nvidia-container-toolkit"]
    return [distro.family, "install", "-y", "nvidia-container-toolkit"]


def engine_choices() -> tuple[str, ...]:
    return ("auto", *ENGINES)
