"""`gpuherd setup runtime` on captured trees: the exact diff, the backup, idempotence, --undo back
to the original bytes, and doctor's runtime checks passing afterwards."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gpuherd.cli.app import app
from gpuherd.doctor.run import run_runtime_checks
from tests.setup.conftest import EXPECTED, snapshot

BACKUP = re.compile(r"\.gpuherd-\d{14}$")


def setup(root: Path, *flags: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(app, ["setup", "runtime", "--root", str(root), "--json", *flags])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


def file_diff(path: str, before: bytes | None, after: bytes) -> str:
    old = [] if before is None else before.decode().splitlines(keepends=True)
    lines = difflib.unified_diff(
        old,
        after.decode().splitlines(keepends=True),
        fromfile="/dev/null" if before is None else path,
        tofile=path,
    )
    return "".join(lines)


# (tree, flags, golden diff, the doctor check that must be ok afterwards)
CHANGING = [
    ("docker-rich", [], "docker-rich", "docker-daemon"),
    ("docker-rich", ["--set-default"], "docker-rich--set-default", "docker-daemon"),
    ("containerd-1.7-v2", [], "containerd-1.7-v2", "containerd"),
    (
        "containerd-1.7-v2",
        ["--set-default", "--cdi"],
        "containerd-1.7-v2--set-default--cdi",
        "containerd",
    ),
    ("containerd-2-v3", [], "containerd-2-v3", "containerd"),
    ("k3s-toolkit", ["--set-default"], "k3s-toolkit--set-default", "containerd"),
    ("microk8s", [], "microk8s", "containerd"),
    ("seed003-loop", [], "seed003-loop", "toolkit-config"),
    (
        "seed003-loop",
        ["--deny-envvar-devices"],
        "seed003-loop--deny-envvar-devices",
        "toolkit-config",
    ),
]


@pytest.mark.parametrize(("name", "flags", "golden", "check_id"), CHANGING)
def test_wires_and_undoes(
    tree: Callable[[str], Path], name: str, flags: list[str], golden: str, check_id: str
) -> None:
    root = tree(name)
    original = snapshot(root)
    expected = (EXPECTED / f"{golden}.diff").read_text()

    code, dry = setup(root, "--dry-run", *flags)
    assert (code, dry["status"]) == (0, "would-change")
    assert "".join(c["diff"] for p in dry["plans"] for c in p["changes"]) == expected
    assert snapshot(root) == original  # a dry run touches nothing

    code, done = setup(root, *flags)
    assert (code, done["status"]) == (0, "changed")
    changes = [c for p in done["plans"] for c in p["changes"]]
    written = ""
    for change in changes:
        inner = change["path"]
        before = original.get(inner.lstrip("/"))
        now = (root / inner.lstrip("/")).read_bytes()
        written += file_diff(inner, None if before is None else before[1], now)  # type: ignore[arg-type]
        if before is None:
            assert change["backup"] is None
        else:
            assert change["backup"].startswith(inner)
            assert BACKUP.search(change["backup"])
            assert (root / change["backup"].lstrip("/")).read_bytes() == before[1]
    assert written == expected
    assert done["verify"]
    assert all(v["status"] != "fail" for v in done["verify"])
    after = snapshot(root)

    code, again = setup(root, *flags)
    assert (code, again["status"]) == (0, "already-wired")
    assert snapshot(root) == after  # no new backups, no rewrites
    assert any(p["evidence"] for p in again["plans"])

    statuses = {c.id: c.status for c in run_runtime_checks(root=root)}
    assert statuses[check_id] in ("ok", "warn")
    assert "fail" not in statuses.values()
    if check_id != "toolkit-config":
        assert statuses[check_id] == "ok"

    code, undone = setup(root, "--undo")
    assert (code, undone["status"]) == (0, "undone")
    assert snapshot(root) == original  # the original bytes, modes and links
    code, nothing = setup(root, "--undo")
    assert (code, nothing["status"]) == (0, "nothing-to-undo")


@pytest.mark.parametrize("name", ["containerd-1.7-v2", "containerd-2-v3"])
def test_doctor_sees_the_runtime_only_afterwards(tree: Callable[[str], Path], name: str) -> None:
    root = tree(name)
    before = {c.id: c for c in run_runtime_checks(root=root)}
    assert before["containerd"].status == "warn"
    assert "no nvidia runtime registered" in before["containerd"].message
    setup(root)
    after = [c for c in run_runtime_checks(root=root) if c.id == "containerd"]
    assert after
    assert all(c.status == "ok" for c in after)


@pytest.mark.parametrize(("name", "target"), [("docker-wired", "docker"), ("k3s-toolkit", "k3s")])
def test_already_wired_is_a_no_op(tree: Callable[[str], Path], name: str, target: str) -> None:
    root = tree(name)
    original = snapshot(root)
    code, data = setup(root)
    assert (code, data["status"]) == (0, "already-wired")
    (plan,) = [p for p in data["plans"] if p["target"] == target]
    assert plan["wired"]
    assert plan["evidence"]
    assert not plan["changes"]
    assert snapshot(root) == original
    assert not (root / "var/lib/gpuherd").exists()


def test_k3s_never_edits_its_generated_config(tree: Callable[[str], Path]) -> None:
    root = tree("k3s-toolkit")
    rendered = root / "var/lib/rancher/k3s/agent/etc/containerd/config.toml"
    original = rendered.read_bytes()
    code, data = setup(root, "--set-default")
    assert code == 0
    (plan,) = [p for p in data["plans"] if p["target"] == "k3s"]
    assert [c["path"] for c in plan["changes"]] == [
        "/etc/rancher/k3s/config.yaml.d/90-gpuherd-nvidia.yaml"
    ]
    assert plan["commands"] == [["systemctl", "restart", "k3s"]]
    assert plan["effective_config"] == ["k3s", "crictl", "info"]
    assert rendered.read_bytes() == original
    assert not (rendered.parent / "config.toml.tmpl").exists()


def test_k3s_without_toolkit_says_how_to_install(tree: Callable[[str], Path]) -> None:
    root = tree("k3s-no-toolkit")
    original = snapshot(root)
    code, data = setup(root)
    assert (code, data["status"]) == (1, "refused")
    (plan,) = data["plans"]
    assert "not installed" in plan["refusal"]["reason"]
    fix = plan["refusal"]["fix"]
    assert fix.startswith("on Ubuntu 24.04.1 LTS: ")
    assert "sudo apt-get install -y nvidia-container-toolkit" in fix
    assert "nvidia.github.io/libnvidia-container/stable/deb" in fix
    assert snapshot(root) == original


def test_gpu_operator_host_is_left_alone(tree: Callable[[str], Path]) -> None:
    root = tree("gpu-operator")
    original = snapshot(root)
    code, data = setup(root)
    assert (code, data["status"]) == (0, "already-wired")
    (plan,) = data["plans"]
    assert plan["target"] == "gpu-operator"
    assert not plan["changes"]
    assert any("/usr/local/nvidia/toolkit" in e for e in plan["evidence"])
    code, data = setup(root, "--set-default")
    assert (code, data["status"]) == (1, "refused")
    assert "ClusterPolicy" in data["plans"][0]["refusal"]["fix"]
    assert snapshot(root) == original


def test_seed003_loop_is_followed_through_the_wrapper(tree: Callable[[str], Path]) -> None:
    root = tree("seed003-loop")
    _code, data = setup(root, "--dry-run")
    (plan,) = [p for p in data["plans"] if p["target"] == "toolkit"]
    (change,) = plan["changes"]
    assert (
        "/usr/local/bin/runc-gpu-wrapper is a script that runs /usr/bin/nvidia-container-runtime.real"
        in change["why"]
    )
    assert "'/opt/concourse/bin/runc.real' is the real low-level runtime" in change["why"]
