"""Engine cases beyond the captured trees: RKE2, a k3s that has not picked the toolkit up yet,
Docker without a daemon.json, Docker's own containerd, containerd without a config, and the
toolkit install advice per distribution."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from gpuherd.runtimecfg.base import Root
from gpuherd.setup import detect
from gpuherd.setup.files import apply_changes
from gpuherd.setup.run import Options, make_plans, status_of
from tests.setup.conftest import TREES


def test_rke2_paths_and_service(tmp_path: Path) -> None:
    root = tmp_path / "rke2"
    shutil.copytree(TREES / "k3s-toolkit", root, symlinks=True)
    shutil.move(root / "var/lib/rancher/k3s", root / "var/lib/rancher/rke2")
    shutil.move(root / "etc/rancher/k3s", root / "etc/rancher/rke2")
    (root / "etc/systemd/system/k3s.service").rename(root / "etc/systemd/system/rke2-agent.service")
    (root / "usr/local/bin/k3s").unlink()
    plans = make_plans(Options(root=root, set_default=True))
    (plan,) = [p for p in plans if p.target == "rke2"]
    assert [c.path for c in plan.changes] == [
        "/etc/rancher/rke2/config.yaml.d/90-gpuherd-nvidia.yaml"
    ]
    assert plan.commands == [["systemctl", "restart", "rke2-agent"]]
    assert plan.effective_config == [
        "/var/lib/rancher/rke2/bin/crictl",
        "--config",
        "/var/lib/rancher/rke2/agent/etc/crictl.yaml",
        "info",
    ]
    apply_changes(Root(root), plan.changes)
    again = [p for p in make_plans(Options(root=root, set_default=True)) if p.target == "rke2"]
    assert again[0].evidence[-1] == (
        "/etc/rancher/rke2/config.yaml.d/90-gpuherd-nvidia.yaml: default-runtime: nvidia"
    )
    # k3s renders the default only when it restarts: until then the restart is still owed.
    assert again[0].commands == [["systemctl", "restart", "rke2-agent"]]
    assert not again[0].changes


def test_k3s_started_before_the_toolkit_needs_a_restart(tree: Callable[[str], Path]) -> None:
    root = tree("k3s-no-toolkit")
    for name in ("nvidia-ctk", "nvidia-container-runtime", "nvidia-container-runtime-hook"):
        (root / "usr/bin" / name).write_text("\x7fELF")
        (root / "usr/bin" / name).chmod(0o755)
    (plan,) = [p for p in make_plans(Options(root=root)) if p.target == "k3s"]
    assert not plan.changes
    assert plan.commands == [["systemctl", "restart", "k3s"]]
    assert "it has not done so yet: restart k3s" in plan.notes[0]


def test_docker_without_daemon_json_gets_one(tree: Callable[[str], Path]) -> None:
    root = tree("docker-wired")
    (root / "etc/docker/daemon.json").unlink()
    (plan,) = [p for p in make_plans(Options(root=root)) if p.target == "docker"]
    (change,) = plan.changes
    assert change.before is None
    assert json.loads(change.after or b"") == {
        "runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime"}}
    }


def test_dockers_own_containerd_is_left_alone(tree: Callable[[str], Path]) -> None:
    root = tree("docker-wired")
    config = root / "etc/containerd/config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('#   Docker\'s containerd\ndisabled_plugins = ["cri"]\n')
    (plan,) = [p for p in make_plans(Options(root=root)) if p.target == "containerd"]
    assert plan.wired
    assert "disabled_plugins has the CRI plugin" in plan.evidence[0]


def test_containerd_without_config_refuses(tree: Callable[[str], Path]) -> None:
    root = tree("docker-wired")
    plans = make_plans(Options(root=root, engine="containerd"))
    (plan,) = [p for p in plans if p.target == "containerd"]
    assert plan.refusal is not None
    assert "containerd config default > /etc/containerd/config.toml" in plan.refusal.fix
    assert status_of(plans, dry_run=True).status == "refused"


def test_containerd_fixes_an_existing_runtime_without_systemd_cgroup(
    tree: Callable[[str], Path],
) -> None:
    root = tree("containerd-1.7-v2")
    config = root / "etc/containerd/config.toml"
    config.write_text(
        config.read_text()
        + '\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]\n'
        + '  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia.options]\n'
        + '    BinaryName = "/usr/bin/nvidia-container-runtim"\n'
    )
    (plan,) = [p for p in make_plans(Options(root=root)) if p.target == "containerd"]
    (change,) = plan.changes
    assert change.why == (
        'nvidia runtime_type = "io.containerd.runc.v2"; '
        "nvidia BinaryName '/usr/bin/nvidia-container-runtim' -> '/usr/bin/nvidia-container-runtime'; "
        "nvidia SystemdCgroup missing -> True (as 'runc' has it)"
    )


@pytest.mark.parametrize(
    ("os_release", "family", "last_step"),
    [
        (
            'ID=ubuntu\nID_LIKE=debian\nPRETTY_NAME="Ubuntu 22.04"\n',
            "apt",
            "sudo apt-get update && sudo apt-get install -y nvidia-container-toolkit",
        ),
        (
            'ID="rocky"\nID_LIKE="rhel centos fedora"\n',
            "dnf",
            "sudo dnf install -y nvidia-container-toolkit",
        ),
        ('ID="amzn"\nVERSION_ID="2"\n', "yum", "sudo yum install -y nvidia-container-toolkit"),
        (
            'ID="opensuse-leap"\nID_LIKE="suse opensuse"\n',
            "zypper",
            "sudo zypper --gpg-auto-import-keys install -y nvidia-container-toolkit",
        ),
        ("ID=arch\n", "pacman", "sudo pacman -S --needed nvidia-container-toolkit"),
        ("ID=plan9\n", "unknown", None),
    ],
)
def test_install_advice_per_distribution(
    tmp_path: Path, os_release: str, family: str, last_step: str | None
) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").write_text(os_release)
    distro = detect.read_os_release(Root(tmp_path))
    assert distro.family == family
    steps = detect.install_steps(distro)
    if last_step is None:
        assert "install-guide" in steps[0]
    else:
        assert steps[-1] == last_step


def test_install_runs_only_from_a_configured_source(tmp_path: Path) -> None:
    (tmp_path / "etc/apt/sources.list.d").mkdir(parents=True)
    (tmp_path / "etc/os-release").write_text("ID=debian\n")
    view = Root(tmp_path)
    distro = detect.read_os_release(view)
    assert detect.install_command(view, distro) is None
    (tmp_path / "etc/apt/sources.list.d/nvidia-container-toolkit.list").write_text("deb ...\n")
    assert detect.install_command(view, distro) == [
        "apt-get",
        "install",
        "-y",
        "nvidia-container-toolkit",
    ]


def test_containerd_config_version_1_uses_the_cri_plugin(tree: Callable[[str], Path]) -> None:
    import tomllib

    root = tree("containerd-1.7-v2")
    (root / "etc/containerd/config.toml").write_text(
        '[plugins.cri.containerd]\n  snapshotter = "overlayfs"\n'
        '  [plugins.cri.containerd.runtimes.runc]\n    runtime_type = "io.containerd.runc.v2"\n'
        "    [plugins.cri.containerd.runtimes.runc.options]\n      SystemdCgroup = true\n"
    )
    (plan,) = [p for p in make_plans(Options(root=root, cdi=True)) if p.target == "containerd"]
    (change,) = plan.changes
    data = tomllib.loads((change.after or b"").decode())
    assert data["plugins"]["cri"]["containerd"]["runtimes"]["nvidia"] == {
        "runtime_type": "io.containerd.runc.v2",
        "options": {"SystemdCgroup": True, "BinaryName": "/usr/bin/nvidia-container-runtime"},
    }
    assert "enable_cdi" not in data["plugins"]["cri"]  # version 1 has no CDI switch


def test_docker_cdi_keeps_other_features(tree: Callable[[str], Path]) -> None:
    root = tree("docker-rich")
    (plan,) = [p for p in make_plans(Options(root=root, cdi=True)) if p.target == "docker"]
    (change,) = plan.changes
    assert json.loads(change.after or b"")["features"] == {
        "buildkit": True,
        "containerd-snapshotter": True,
        "cdi": True,
    }
    assert "features.cdi = true" in change.why
