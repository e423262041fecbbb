"""The README's install path holds together: its config validates, the files it installs exist,
and the socket and group it tells users about are the unit's."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

from tests.conftest import gpuherd_argv

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_readme_config_validates(tmp_path: Path) -> None:
    block = re.search(r"<<'YAML'\n(.*?)\nYAML\n", README, re.S)
    assert block is not None
    config = tmp_path / "gpuherd.yaml"
    config.write_text(block.group(1) + "\n")
    done = subprocess.run(
        gpuherd_argv("validate", "-c", str(config)), capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_readme_matches_the_unit_and_links_what_exists() -> None:
    unit = (ROOT / "deploy" / "systemd" / "gpuherd.service").read_text()
    exec_start = shlex.split(re.search(r"^ExecStart=(.*)$", unit, re.M).group(1))  # type: ignore[union-attr]
    opts = dict(zip(exec_start[2::2], exec_start[3::2], strict=True))
    assert f"GPUHERD_SOCKET={opts['--socket']}" in README
    assert f"groupadd --system {opts['--socket-group']}" in README
    assert f"usermod -aG {opts['--socket-group']} alice" in README
    assert f"ln -s /opt/gpuherd/bin/gpuherd {exec_start[0]}" in README
    assert "/etc/gpuherd/gpuherd.yaml" in README
    assert opts["-c"] == "/etc/gpuherd/gpuherd.yaml"
    for link in re.findall(r"\]\(([^)#]+)\)", README):
        if not link.startswith("http"):
            assert (ROOT / link).exists(), link
    assert "pipx install gpuherd" in README
    assert "gpuherd --install-completion" in README
