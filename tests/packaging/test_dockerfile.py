"""The broker image's Dockerfile: slim base, the wheel with [kubernetes] installed by the step
the wheel test runs (deploy/docker/install.sh), no compiler, OCI labels; and the DaemonSet,
where there is one, runs it at a pinned tag."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from gpuherd import __version__

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPILERS = ("gcc", "g++", "clang", "build-essential", "make", "cc1", "python3-dev")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last:]


def test_slim_base_install_step_labels_and_no_compilers() -> None:
    stage = final_stage()
    args = dict(rest.split("=", 1) for word, rest in instructions() if word == "ARG")
    base = stage[0][1].replace("${PYTHON}", args["PYTHON"])
    assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", base), base
    runs = [rest for word, rest in stage if word == "RUN"]
    assert any("/tmp/install.sh /tmp/wheels" in r for r in runs)
    assert ("COPY", "deploy/docker/install.sh /tmp/install.sh") in stage
    assert "GPUHERD_EXTRAS-[kubernetes]}" in (ROOT / "deploy" / "docker" / "install.sh").read_text()
    assert "GPUHERD_EXTRAS" not in DOCKERFILE.read_text()  # the image takes the default
    assert "--only-binary=:all:" in (ROOT / "deploy" / "docker" / "install.sh").read_text()
    for word, rest in instructions():
        if word == "RUN":
            installs = re.findall(r"(?:apt-get|apt|apk) (?:-\S+ )*install ([^&;]+)", rest)
            for package in " ".join(installs).split():
                assert package not in COMPILERS, f"{package} installed: {rest}"
    labels = " ".join(rest for word, rest in stage if word == "LABEL")
    for key in ("title", "description", "version", "licenses", "source"):
        assert f"org.opencontainers.image.{key}=" in labels
    version_arg = next(rest for word, rest in stage if word == "ARG" and rest.startswith("VERSION"))
    assert version_arg == f"VERSION={__version__}"
    entry = next(rest for word, rest in stage if word == "ENTRYPOINT")
    assert entry == '["gpuherd"]'


def test_daemonset_runs_the_image_at_a_pinned_tag() -> None:
    manifests = sorted((ROOT / "deploy" / "kubernetes").glob("**/*.y*ml"))
    daemonsets = [
        doc
        for path in manifests
        for doc in yaml.safe_load_all(path.read_text())
        if isinstance(doc, dict) and doc.get("kind") == "DaemonSet"
    ]
    if not manifests:
        # No manifests yet: the Dockerfile alone is checked (above); nothing to pin against.
        assert DOCKERFILE.exists()
        return
    assert daemonsets, "deploy/kubernetes has manifests but no DaemonSet"
    images = [
        c["image"]
        for ds in daemonsets
        for c in ds["spec"]["template"]["spec"].get("containers", [])
        if "gpuherd" in c.get("image", "")
    ]
    assert images, "no DaemonSet container runs the gpuherd image"
    for image in images:
        _name, _, tag = image.rpartition(":")
        assert "@sha256:" in image or (tag and tag != "latest" and "/" not in tag), image
        assert "@sha256:" in image or tag == __version__, f"{image}: tag is not {__version__}"
