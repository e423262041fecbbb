"""Input that used to crash or hang `gpuherd lint`: each is now a finding or a clear refusal."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import gpuherd_argv


def lint(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        gpuherd_argv("lint", *args), input=stdin, capture_output=True, timeout=60, check=False
    )


def test_deeply_nested_toml_is_a_parse_error(tmp_path: Path) -> None:
    deep = tmp_path / "config.toml"
    deep.write_text("a = " + "[" * 50_000 + "]" * 50_000 + "\n")
    result = lint(str(deep))
    assert result.returncode == 1
    assert b"nested too deeply to read" in result.stdout
    assert b"Traceback" not in result.stderr


def test_binary_stdin_is_read_without_a_crash() -> None:
    result = lint("-", stdin=bytes(range(256)) * 20)
    assert result.returncode in (0, 1)
    assert b"Traceback" not in result.stderr


def test_endless_or_blocking_inputs_are_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    for path in (str(fifo), "/dev/zero"):
        result = lint(path)
        assert result.returncode == 2
        assert result.stderr.strip().endswith(b"not a regular file")
    huge = lint("-", stdin=b" " * (17 << 20))
    assert huge.returncode == 2
    assert b"over 16 MiB" in huge.stderr


def test_an_unreadable_file_in_a_linted_directory_is_one_finding(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "good.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    (project / "bad.yaml").symlink_to("/proc/self/mem")  # opens, then every read fails
    result = lint(str(project), "--format", "json")
    assert result.returncode == 1, result.stderr
    assert b"Traceback" not in result.stderr
    findings = json.loads(result.stdout)["findings"]
    assert [(f["rule"], Path(f["file"]).name) for f in findings] == [("unreadable", "bad.yaml")]
    assert findings[0]["message"].startswith("cannot read: ")
