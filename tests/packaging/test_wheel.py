"""The wheel as an operator gets it: built with `python -m build`, installed into a fresh venv
(by the broker image's install step) with nothing of the checkout on the path, and run from
there (version, lint, the demo)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from email.parser import Parser
from pathlib import Path

import pytest

from gpuherd import __version__

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "lint" / "fixtures" / "seed000-mapshot.yaml"
INSTALL = ROOT / "deploy" / "docker" / "install.sh"
# Signs that pip could not reach an index: the test cannot run here, it did not fail.
OFFLINE = ("NewConnectionError", "Temporary failure in name resolution", "Network is unreachable")


def build(outdir: Path, *kinds: str) -> list[Path]:
    # --no-isolation: the backend (hatchling) is in the dev extra, so no index is needed.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--no-isolation",
            *kinds,
            "--outdir",
            str(outdir),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return sorted(outdir.iterdir())


def clean_env(home: Path) -> dict[str, str]:
    """No PYTHONPATH, no virtualenv of ours, the venv's bin first: what a fresh shell has."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env |= {"HOME": str(home), "PATH": f"{home / 'venv' / 'bin'}:/usr/bin:/bin"}
    return env


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    build(out)
    return out


@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A venv set up by the broker image's own install step (deploy/docker/install.sh): the
    wheel and its dependencies, from the index pip is set up with. Without the image's
    [kubernetes] extra: its client and schemas (230 MB) would double the test's time."""
    home = tmp_path_factory.mktemp("home")
    subprocess.run([sys.executable, "-m", "venv", str(home / "venv")], check=True, timeout=120)
    wheels = home / "wheels"
    wheels.mkdir()
    shutil.copy(next(dist.glob("*.whl")), wheels)
    done = subprocess.run(
        ["sh", str(INSTALL), str(wheels), str(home / "venv" / "bin" / "python")],
        capture_output=True,
        text=True,
        env=clean_env(home) | {"GPUHERD_EXTRAS": ""},
        cwd=home,
        timeout=300,
        check=False,
    )
    if done.returncode != 0 and any(sign in done.stderr for sign in OFFLINE):
        pytest.skip("no package index reachable to install the wheel's dependencies")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(f"gpuherd {__version__}")
    assert list(wheels.iterdir()) == []  # the step removes the wheel it installed
    yield home
    shutil.rmtree(home, ignore_errors=True)


def gpuherd(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(home / "venv" / "bin" / "gpuherd"), *args],
        capture_output=True,
        text=True,
        env=clean_env(home),
        cwd=home,
        timeout=timeout,
        check=False,
    )


def test_metadata_names_license_urls_extras_and_entry_point(dist: Path) -> None:
    wheel = next(dist.glob("*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        info = f"gpuherd-{__version__}.dist-info"
        meta = Parser().parsestr(z.read(f"{info}/METADATA").decode())
        entry = z.read(f"{info}/entry_points.txt").decode()
    assert meta["Name"] == "gpuherd"
    assert meta["Version"] == __version__
    assert meta["License-Expression"] == "Apache-2.0"
    assert f"{info}/licenses/LICENSE" in names
    assert {"cuda", "kubernetes"} <= set(meta.get_all("Provides-Extra") or [])
    assert any(u.startswith("Homepage, https://") for u in meta.get_all("Project-URL") or [])
    assert "Programming Language :: Python :: 3.11" in (meta.get_all("Classifier") or [])
    # The kubernetes client is an extra only: the base install stays small.
    base = [r for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r]
    assert not any(r.startswith(("kubernetes", "cuda")) for r in base)
    assert "gpuherd = gpuherd.cli.app:main" in entry
    assert "gpuherd/py.typed" in names
    assert "gpuherd/examples/demo.yaml" in names
    for page in ("index.html", "dashboard.js", "dashboard.css"):  # the dashboard, no build step
        assert f"gpuherd/api/static/{page}" in names
    assert not any("__pycache__" in n or n.startswith("tests/") for n in names)


def test_sdist_builds_a_wheel(tmp_path: Path) -> None:
    made = build(tmp_path)  # default: the sdist, then the wheel from the unpacked sdist
    assert [p.name for p in made] == [
        f"gpuherd-{__version__}-py3-none-any.whl",
        f"gpuherd-{__version__}.tar.gz",
    ]


def test_installed_wheel_runs_without_the_checkout(installed: Path) -> None:
    where = subprocess.run(
        [
            str(installed / "venv" / "bin" / "python"),
            "-c",
            "import gpuherd; print(gpuherd.__file__)",
        ],
        capture_output=True,
        text=True,
        env=clean_env(installed),
        cwd=installed,
        check=True,
    ).stdout
    assert where.startswith(str(installed / "venv")), where

    version = gpuherd(installed, "--version")
    assert (version.returncode, version.stdout.strip()) == (0, f"gpuherd {__version__}")

    shutil.copy(FIXTURE, installed / "compose.yaml")
    lint = gpuherd(installed, "lint", "compose.yaml", "--format", "json")
    assert lint.returncode == 1, lint.stderr  # the seed-000 compose file has findings
    assert "compose.yaml" in lint.stdout

    demo = gpuherd(installed, "demo", timeout=180)
    assert demo.returncode == 0, demo.stdout + demo.stderr


def test_lint_path_loads_no_web_stack_nor_pydantic(installed: Path) -> None:
    trace = subprocess.run(
        [
            str(installed / "venv" / "bin" / "python"),
            "-X",
            "importtime",
            "-m",
            "gpuherd",
            "lint",
            "--help",
        ],
        capture_output=True,
        text=True,
        env=clean_env(installed),
        cwd=installed,
        check=True,
    ).stderr
    loaded = {line.split("|")[-1].strip() for line in trace.splitlines() if "|" in line}
    assert "gpuherd.cli.lint" in loaded
    assert not loaded & {
        "pydantic",
        "fastapi",
        "uvicorn",
        "httpx",
        "prometheus_client",
        "kubernetes",
    }
