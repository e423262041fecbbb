"""What an operator's `pip install gpuherd` costs: the base install's size on disk and how long
`gpuherd lint --help` takes to import, and which heavy packages that path loads.

    .venv/bin/python bench/install.py            # builds the wheel, installs it in a temp venv

Writes bench/results/install.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("pydantic", "fastapi", "uvicorn", "kubernetes", "httpx", "prometheus_client")


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="gpuherd-install-") as tmp:
        work = Path(tmp)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "build",
                "--no-isolation",
                "--wheel",
                "--outdir",
                tmp,
                str(ROOT),
            ],
            check=True,
            capture_output=True,
        )
        wheel = next(work.glob("*.whl"))
        wheel_bytes = wheel.stat().st_size
        venv = work / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        site = next(venv.glob("lib/python*/site-packages"))
        before = size(site)  # pip and setuptools of the bare venv
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", str(wheel)],
            check=True,
            capture_output=True,
        )
        installed = size(site) - before
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            subprocess.run(
                [str(venv / "bin" / "gpuherd"), "lint", "--help"],
                check=True,
                capture_output=True,
                env=env,
                cwd=tmp,
            )
            runs.append(time.perf_counter() - started)
        trace = subprocess.run(
            [str(venv / "bin" / "python"), "-X", "importtime", "-m", "gpuherd", "lint", "--help"],
            check=True,
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp,
        ).stderr
    top = {
        line.split("|")[2].strip(): int(line.split("|")[1])
        for line in trace.splitlines()
        if line.startswith("import time:") and "|" in line and line.split("|")[1].strip().isdigit()
    }
    result = {
        "wheel_bytes": wheel_bytes,
        "base_install_bytes": installed,
        "lint_help_wall_s_median": sorted(runs)[len(runs) // 2],
        "lint_help_import_us": top.get("gpuherd.cli.app"),
        "heavy_imported": {name: name in top for name in HEAVY},
        "pydantic_imported_by": "typer" if "typer._adapters" in top else None,
    }
    out = ROOT / "bench" / "results" / "install.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
