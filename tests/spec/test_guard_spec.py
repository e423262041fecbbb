"""The guard's keys in gpuherd.yaml: defaults, and bad values named by file, line and field."""

from __future__ import annotations

import subprocess
from pathlib import Path

from gpuherd.ids import TenantName
from gpuherd.spec.load import parse_config
from tests.conftest import GIB, gpuherd_argv


def test_defaults_and_tenant_keys() -> None:
    config = parse_config(
        """\
version: 1
gpus: [{name: gpu0, index: 0, guard: {min_free: 2GiB}}]
tenants:
  plex: {gpu: gpu0, vram: 1GiB, headroom: 1GiB, idle: {url: "http://127.0.0.1:32400/idle"}}
""",
        source="gpuherd.yaml",
    )
    guard = config.gpus[0].guard if config.gpus else None
    assert guard is not None
    assert (guard.min_free, guard.for_, guard.restore_above, guard.restore_after) == (
        2 * GIB,
        5.0,
        GIB,
        60.0,
    )
    assert guard.flaps_per_hour == 4
    assert config.tenants[TenantName("plex")].headroom == GIB


def validate(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "gpuherd.yaml"
    cfg.write_text(text)
    argv = gpuherd_argv("validate", "-c", str(cfg))
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def test_a_min_free_the_gpu_cannot_have_is_refused(tmp_path: Path) -> None:
    done = validate(
        tmp_path,
        "version: 1\ngpus:\n  - {name: gpu0, index: 0, memory: 12GiB, reserve: 1GiB,"
        " guard: {min_free: 11GiB}}\n",
    )
    assert done.returncode == 2
    assert "gpuherd.yaml:3:5: gpus[0]: guard.min_free must be smaller than memory - reserve" in (
        done.stdout + done.stderr
    )
    assert "Traceback" not in done.stderr


def test_unknown_and_bad_guard_keys_are_named(tmp_path: Path) -> None:
    done = validate(
        tmp_path, "version: 1\ngpus:\n  - {name: gpu0, index: 0, guard: {min_fre: 2GiB}}\n"
    )
    assert done.returncode == 2
    assert "gpus[0].guard.min_fre" in done.stdout + done.stderr
    done = validate(
        tmp_path,
        "version: 1\ngpus:\n  - {name: gpu0, index: 0, guard: {min_free: 2GiB, for: soon}}\n",
    )
    assert done.returncode == 2
    assert "gpus[0].guard.for" in done.stdout + done.stderr
