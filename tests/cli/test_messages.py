"""Error messages and hints reach the terminal whole: brackets in them are text, not markup
(before, `pip install 'gpuherd[kubernetes]'` printed as `pip install 'gpuherd'`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# `serve --kubernetes` where the kubernetes package cannot be imported (None in sys.modules).
WITHOUT_CLIENT = """\
import sys
sys.modules["kubernetes"] = None
sys.argv = ["gpuherd", *sys.argv[1:]]
from gpuherd.cli.app import main
main()
"""


def test_the_install_hint_keeps_its_extra_in_brackets(sim_dir: Path, tmp_path: Path) -> None:
    argv = [sys.executable, "-c", WITHOUT_CLIENT, "serve", "--kubernetes", "--node", "n1"]
    argv += ["--backend", "sim", "--sim-dir", str(sim_dir), "--state", str(tmp_path / "s")]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert "the Kubernetes mode needs the kubernetes client" in result.stderr
    assert "pip install 'gpuherd[kubernetes]'" in result.stderr
    assert "Traceback" not in result.stderr
