"""Runtime config rules on TOML and JSON files, positioned by key."""

from __future__ import annotations

from pathlib import Path

from gpuherd.lint.engine import LintOptions, discover, lint_sources
from gpuherd.lint.model import Finding
from gpuherd.lint.sources.toml_pos import toml_pos
from gpuherd.yamlpos import Pos

TOOLKIT = """\
disable-require = false
accept-nvidia-visible-devices-envvar-when-unprivileged = ACCEPT

[nvidia-container-cli]
ldconfig = "@/sbin/ldconfig.real"

[nvidia-container-runtime]
log-level = "info"
runtimes = RUNTIMES
"""

K3S_TMPL = """\
{{ template "base" . }}

[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "nvidia"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes."nvidia-gpu"]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes."nvidia-gpu".options]
  BinaryName = "/usr/bin/nvidia-container-runtime"
"""


def lint(*files: tuple[str, str]) -> list[Finding]:
    return lint_sources(list(files), LintOptions()).findings


def brief(findings: list[Finding]) -> list[tuple[str, int, int, str]]:
    return [(f.rule, f.line, f.column, f.severity) for f in findings]


def toolkit(accept: str, runtimes: str) -> str:
    return TOOLKIT.replace("ACCEPT", accept).replace("RUNTIMES", runtimes)


def test_toolkit_loop_and_envvar() -> None:
    found = lint(("config.toml", toolkit("true", '["nvidia-container-runtime", "runc"]')))
    assert brief(found) == [
        ("runtime-toolkit", 2, 1, "warning"),
        ("runtime-toolkit", 9, 12, "error"),
    ]
    assert found[1].message == (
        "runtimes[0] = 'nvidia-container-runtime' is the nvidia runtime "
        "itself: every container start calls itself in a loop"
    )
    assert lint(("config.toml", toolkit("false", '["runc", "crun"]'))) == []


def test_toolkit_default_envvar_is_flagged_where_absent() -> None:
    text = '[nvidia-container-runtime]\nruntimes = ["runc"]\n'
    assert brief(lint(("config.toml", text))) == [("runtime-toolkit", 1, 1, "warning")]


def test_k3s_template_with_runtime_class_mismatch() -> None:
    rc = (
        "runtimeclass.yaml",
        "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\n"
        "metadata: {name: nvidia}\nhandler: nvidia\n",
    )
    found = lint(("config.toml.tmpl", K3S_TMPL), rc)
    assert [(f.line, f.column, f.severity, f.message.split(":")[0]) for f in found] == [
        (4, 3, "info", "default_runtime_name is 'nvidia'"),
        (
            6,
            1,
            "warning",
            "nvidia runtime 'nvidia-gpu' is used by no RuntimeClass handler in the input (handlers",
        ),
    ]
    fixed = K3S_TMPL.replace('"nvidia-gpu"', "nvidia").replace(
        'default_runtime_name = "nvidia"', 'default_runtime_name = "runc"'
    )
    assert lint(("config.toml.tmpl", fixed), rc) == []


def test_daemon_json() -> None:
    bad = '{\n  "default-runtime": "nvidia",\n  "runtimes": {\n    "gpu": {"path": "/usr/bin/nvidia-contianer-runtime"}\n  }\n}\n'
    found = lint(("daemon.json", bad))
    assert [(f.line, f.column, f.severity, f.message) for f in found] == [
        (
            2,
            3,
            "error",
            "default-runtime is 'nvidia' but no runtime of that name is registered "
            "under `runtimes`: dockerd refuses to start",
        ),
        (
            2,
            3,
            "info",
            "nvidia is the default runtime: every container can see GPUs by setting "
            "NVIDIA_VISIBLE_DEVICES, even without --gpus",
        ),
        (
            4,
            13,
            "error",
            "runtime 'gpu' points at '/usr/bin/nvidia-contianer-runtime': a typo of "
            "nvidia-container-runtime?",
        ),
    ]
    good = '{"runtimes": {"nvidia": {"path": "nvidia-container-runtime", "runtimeArgs": []}}}'
    assert lint(("daemon.json", good)) == []


def test_toml_parse_error_is_positioned() -> None:
    found = lint(("config.toml", '[nvidia-container-runtime]\nruntimes = ["runc"\n'))
    assert [(f.rule, f.line) for f in found] == [("parse-error", 3)]


def test_unrelated_toml_is_ignored() -> None:
    assert lint(("pyproject.toml", '[project]\nname = "x"\n')) == []


def test_toml_pos_locator() -> None:
    text = '[a]\nx = 1\n[a.b."c.d"]\n  y = [1, 2]\n'
    assert toml_pos(text, ("a", "x")) == Pos(2, 1)
    assert toml_pos(text, ("a", "b", "c.d")) == Pos(3, 1)
    assert toml_pos(text, ("a", "b", "c.d", "y")) == Pos(4, 3)
    assert toml_pos(text, ("a", "b", "c.d", "y", 1)) == Pos(4, 7)


def test_discovery_includes_k3s_templates(tmp_path: Path) -> None:
    (tmp_path / "config.toml.tmpl").write_text(K3S_TMPL)
    (tmp_path / "README.md").write_text("x")
    assert [p.name for p in discover([tmp_path])] == ["config.toml.tmpl"]
