"""The command as a user runs it (a real process): exit codes, messages, usage errors, --undo
refusals, and `gpuherd doctor --brief`."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.conftest import gpuherd_argv
from tests.doctor.trees import healthy_host
from tests.setup.conftest import snapshot


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        gpuherd_argv(*args), capture_output=True, text=True, timeout=60, check=False
    )


def test_text_output_dry_run_then_apply(tree: Callable[[str], Path]) -> None:
    root = tree("docker-rich")
    dry = run("setup", "runtime", "--root", str(root), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("--- /etc/docker/daemon.json\n+++ /etc/docker/daemon.json\n")
    assert "would need: systemctl restart docker" in dry.stdout
    assert "kept default-runtime 'runc' (use --set-default to change it)" in dry.stdout
    assert dry.stdout.rstrip().endswith("dry run: nothing was changed")
    done = run("setup", "runtime", "--root", str(root))
    assert done.returncode == 0, done.stderr
    assert "docker: changed /etc/docker/daemon.json: add runtimes.nvidia" in done.stdout
    assert "backup: /etc/docker/daemon.json.gpuherd-" in done.stdout
    assert "ok    docker-daemon" in done.stdout
    again = run("setup", "runtime", "--root", str(root))
    assert again.returncode == 0
    assert "docker: already wired" in again.stdout
    assert (
        'evidence: /etc/docker/daemon.json: runtimes.nvidia.path = "/usr/bin/nvidia-container-runtime"'
        in again.stdout
    )
    data = json.loads((root / "etc/docker/daemon.json").read_text())
    assert data["features"] == {"buildkit": True, "containerd-snapshotter": True}
    assert data["log-opts"] == {"max-size": "50m", "max-file": "5"}
    assert data["runtimes"]["crun"] == {"path": "/usr/bin/crun"}
    assert data["default-runtime"] == "runc"


def test_parse_error_is_positioned_and_changes_nothing(tree: Callable[[str], Path]) -> None:
    root = tree("containerd-1.7-v2")
    config = root / "etc/containerd/config.toml"
    config.write_text(
        config.read_text().replace('snapshotter = "overlayfs"', "snapshotter = overlayfs")
    )
    original = snapshot(root)
    result = run("setup", "runtime", "--root", str(root))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(
        "error: /etc/containerd/config.toml:23:21: Invalid value; nothing was changed"
    )
    assert "nothing was changed" in result.stderr
    assert snapshot(root) == original

    daemon = tree("docker-rich") / "etc/docker/daemon.json"
    daemon.write_text('{"runtimes": {"crun": {"path": "/usr/bin/crun"},}}\n')
    result = run("setup", "runtime", "--root", str(daemon.parents[2]))
    assert result.returncode == 2
    assert result.stderr.startswith("error: /etc/docker/daemon.json:1:")


def test_usage_errors(tree: Callable[[str], Path], tmp_path: Path) -> None:
    root = tree("docker-rich")
    for args in (
        ["--undo", "--set-default"],
        ["--undo", "--dry-run"],
        ["--restart"],
        ["--install-toolkit"],
        ["--engine", "podman"],
    ):
        result = run("setup", "runtime", "--root", str(root), *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
    missing = run("setup", "runtime", "--root", str(tmp_path / "nope"))
    assert missing.returncode == 2


def test_undo_refuses_when_a_file_changed_since(tree: Callable[[str], Path]) -> None:
    root = tree("docker-rich")
    assert run("setup", "runtime", "--root", str(root)).returncode == 0
    daemon = root / "etc/docker/daemon.json"
    daemon.write_text(daemon.read_text().replace('"live-restore": true', '"live-restore": false'))
    edited = daemon.read_bytes()
    result = run("setup", "runtime", "--root", str(root), "--undo")
    assert result.returncode == 1
    assert "/etc/docker/daemon.json changed after gpuherd wrote it" in result.stderr
    assert daemon.read_bytes() == edited


def test_backups_of_two_runs_in_one_second_do_not_collide(tree: Callable[[str], Path]) -> None:
    from datetime import datetime

    from gpuherd.runtimecfg.base import Root
    from gpuherd.setup.files import apply_changes, undo_last
    from gpuherd.setup.model import Change

    root = tree("docker-wired")
    path = "/etc/docker/daemon.json"
    first = (root / path.lstrip("/")).read_bytes()
    when = datetime(2026, 1, 2, 3, 4, 5)
    one = apply_changes(Root(root), [Change(path, first, b"{}\n", "test")], now=when)
    two = apply_changes(Root(root), [Change(path, b"{}\n", b'{"a": 1}\n', "test")], now=when)
    assert one.backups[path] == "/etc/docker/daemon.json.gpuherd-20260102030405"
    assert two.backups[path] == "/etc/docker/daemon.json.gpuherd-20260102030405.1"
    undo_last(Root(root))
    assert (root / path.lstrip("/")).read_bytes() == b"{}\n"
    undo_last(Root(root))
    assert (root / path.lstrip("/")).read_bytes() == first


def test_mode_is_kept(tree: Callable[[str], Path]) -> None:
    root = tree("containerd-1.7-v2")
    config = root / "etc/containerd/config.toml"
    config.chmod(0o600)
    assert run("setup", "runtime", "--root", str(root)).returncode == 0
    assert config.stat().st_mode & 0o777 == 0o600


def test_doctor_brief(tmp_path: Path) -> None:
    healthy_host(tmp_path)
    result = run("doctor", "--root", str(tmp_path), "--brief")
    assert result.returncode == 0, result.stdout
    assert result.stdout == (
        "GPU ready: 1x NVIDIA GeForce RTX 3080 Ti, driver 550.54.14, CUDA 12.4, "
        "runtime nvidia (docker)\n"
    )
    (tmp_path / "etc/docker/daemon.json").write_text('{"default-runtime": "nvidia"}')
    broken = run("doctor", "--root", str(tmp_path), "--brief")
    assert broken.returncode == 1
    assert broken.stdout.startswith(
        "GPU NOT ready: 1 problem: docker-daemon: /etc/docker/daemon.json: "
    )
    assert broken.stdout.count("\n") == 1
    both = run("doctor", "--root", str(tmp_path), "--brief", "--json")
    assert both.returncode == 2


def test_a_file_changed_after_planning_is_not_overwritten(tree: Callable[[str], Path]) -> None:
    import pytest

    from gpuherd.runtimecfg.base import Root
    from gpuherd.setup.files import ChangedMeanwhile, apply_changes
    from gpuherd.setup.run import Options, make_plans

    root = tree("docker-rich")
    plans = make_plans(Options(root=root))
    daemon = root / "etc/docker/daemon.json"
    daemon.write_text('{"someone": "else"}\n')
    with pytest.raises(ChangedMeanwhile):
        apply_changes(Root(root), [c for p in plans for c in p.changes])
    assert daemon.read_text() == '{"someone": "else"}\n'
    assert sorted(p.name for p in daemon.parent.iterdir()) == ["daemon.json"]


def test_a_failed_write_puts_back_what_was_written(tree: Callable[[str], Path]) -> None:
    import pytest

    from gpuherd.runtimecfg.base import Root
    from gpuherd.setup.files import apply_changes
    from gpuherd.setup.model import Change

    root = tree("docker-rich")
    original = snapshot(root)
    path = "/etc/docker/daemon.json"
    first = (root / path.lstrip("/")).read_bytes()
    changes = [
        Change(path, first, b"{}\n", "first"),
        Change("/etc/docker/new.d/drop-in.json", None, b"{}\n", "created"),
        # Its parent is a file: writing it fails after the first two were written.
        Change(path + "/impossible", None, b"{}\n", "fails"),
    ]
    with pytest.raises(NotADirectoryError):
        apply_changes(Root(root), changes)
    assert snapshot(root) == original
    assert not (root / "etc/docker/new.d").exists()
    assert not (root / "var/lib/gpuherd").exists()
