"""Fuzzing the config readers: whatever the file holds, setup either edits it into a file that
still parses (and --undo restores the bytes) or refuses with a positioned error and leaves it
exactly as it was. Never a traceback."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpuherd.runtimecfg.base import Root
from gpuherd.setup.files import apply_changes, undo_last
from gpuherd.setup.model import SetupInputError
from gpuherd.setup.run import Options, make_plans
from tests.setup.conftest import TREES

ALPHABET = st.sampled_from([*list("{}[]\"',=:.#\n \t\\0123456789abcnvidaruetfls-_"), "é", "\x00"])


@st.composite
def mutated(draw: st.DrawFn, text: str) -> str:
    """The real file with a few random insertions, deletions and replacements."""
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(st.text(ALPHABET, min_size=1, max_size=6))
        if action == "insert":
            text = text[:at] + piece + text[at:]
        elif action == "delete":
            text = text[:at] + text[at + len(piece) :]
        else:
            text = text[:at] + piece + text[at + len(piece) :]
    return text


CASES = [
    ("docker-rich", "etc/docker/daemon.json", "json"),
    ("containerd-1.7-v2", "etc/containerd/config.toml", "toml"),
    ("containerd-2-v3", "etc/containerd/config.toml", "toml"),
    ("seed003-loop", "etc/nvidia-container-runtime/config.toml", "toml"),
    ("microk8s", "var/snap/microk8s/current/args/containerd-template.toml", "toml"),
]


def _parses(kind: str, data: bytes) -> None:
    if kind == "json":
        assert isinstance(json.loads(data), dict)
    else:
        tomllib.loads(data.decode())


def _run_once(root: Path, inner: str, kind: str, content: bytes) -> None:
    target = root / inner
    target.write_bytes(content)
    records = root / "var/lib/gpuherd"
    if records.exists():
        shutil.rmtree(records)
    before_names = sorted(p.name for p in target.parent.iterdir())
    error: SetupInputError | None = None
    try:
        plans = make_plans(Options(root=root, set_default=True, cdi=True))
    except SetupInputError as exc:
        error, plans = exc, []
    if error is not None:
        assert error.path.startswith("/")
        assert error.message
        assert target.read_bytes() == content  # nothing half-written
        assert sorted(p.name for p in target.parent.iterdir()) == before_names
        return
    changes = [c for p in plans for c in p.changes]
    if not changes:
        assert target.read_bytes() == content
        return
    view = Root(root)
    apply_changes(view, changes)
    for change in changes:
        assert change.after is not None
        _parses(
            "json" if change.path.endswith(".json") else "toml",
            (root / change.path.lstrip("/")).read_bytes(),
        )
    undo_last(view)
    assert target.read_bytes() == content


@pytest.mark.parametrize(("name", "inner", "kind"), CASES)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mutated_configs(
    tmp_path: Path, name: str, inner: str, kind: str, data: st.DataObject
) -> None:
    root = tmp_path / name
    if not root.exists():
        shutil.copytree(TREES / name, root, symlinks=True)
    original = (TREES / name / inner).read_text()
    text = data.draw(mutated(original))
    _run_once(root, inner, kind, text.encode())


@pytest.mark.parametrize(("name", "inner", "kind"), CASES[:2])
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=200))
def test_arbitrary_bytes(tmp_path: Path, name: str, inner: str, kind: str, raw: bytes) -> None:
    root = tmp_path / name
    if not root.exists():
        shutil.copytree(TREES / name, root, symlinks=True)
    _run_once(root, inner, kind, raw)


# Structural fuzzing: documents built from the keys the editors look for, with wrong types.
KEYS = st.sampled_from(
    [
        "plugins",
        "io.containerd.grpc.v1.cri",
        "io.containerd.cri.v1.runtime",
        "cri",
        "containerd",
        "runtimes",
        "nvidia",
        "runc",
        "options",
        "BinaryName",
        "SystemdCgroup",
        "default_runtime_name",
        "runtime_type",
        "imports",
        "disabled_plugins",
        "enable_cdi",
        "nvidia-container-runtime",
        "accept-nvidia-visible-devices-envvar-when-unprivileged",
        "default-runtime",
        "features",
        "path",
        "cdi",
    ]
)
SCALARS = st.one_of(
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from(["runc", "nvidia", "/usr/bin/runc", "nvidia-container-runtime", "", "*.toml"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=12,
)
DOCUMENTS = st.dictionaries(KEYS, VALUES, max_size=5)


@pytest.mark.parametrize("case", CASES)
@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(document=DOCUMENTS, version=st.sampled_from([None, 1, 2, 3]))
def test_wrong_shapes(
    tmp_path: Path, case: tuple[str, str, str], document: dict[str, object], version: int | None
) -> None:
    name, inner, kind = case
    import tomlkit

    root = tmp_path / name
    if not root.exists():
        shutil.copytree(TREES / name, root, symlinks=True)
    if version is not None and kind == "toml":
        document = {"version": version, **document}
    text = json.dumps(document) if kind == "json" else tomlkit.dumps(document)
    _run_once(root, inner, kind, text.encode())
