"""What the doctor looks at: a root filesystem, an environment, host or container mode, and the
facts several checks share (driver version, device nodes, libraries), gathered once."""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpuherd.doctor.model import Mode
from gpuherd.runtimecfg.base import Root

LIB_DIRS = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/lib64",
    "/lib",
    "/usr/local/nvidia/lib64",
    "/usr/local/nvidia/lib",
    "/usr/lib/wsl/lib",
)
_KERNEL_RE = re.compile(r"Kernel Module(?:\s+for\s+\S+)?\s+(\d+\.\d+(?:\.\d+)?)")
_DEVICE_RE = re.compile(r"^nvidia(\d+)$")


@dataclass(frozen=True, slots=True)
class GpuInfo:
    model: str | None
    uuid: str | None
    bus: str


@dataclass
class Context:
    root: Root
    env: dict[str, str]
    mode: Mode
    mode_evidence: list[str]
    live: bool  # looking at the running system (NVML and probes allowed)
    need: set[str] | None  # capabilities asked for with --need; None = infer
    probe: bool
    nvml_lib: Any = None  # a pynvml stand-in (tests); None = the real binding
    kernel_version: str | None = None
    gpus: list[GpuInfo] = field(default_factory=list)
    device_nodes: list[str] = field(default_factory=list)  # /dev/nvidia0, ...
    lib_dirs: list[str] = field(default_factory=list)

    def find_lib(self, name: str) -> str | None:
        for directory in self.lib_dirs:
            path = f"{directory}/{name}"
            if self.root.resolve(path) is not None:
                return path
        return None

    def lib_version(self, stem: str) -> tuple[str | None, str | None]:
        """(path found, driver version from its real file name `stem.so.550.54.14`)."""
        path = self.find_lib(f"{stem}.so.1")
        if path is None:
            return None, None
        final = self.root.resolve(path) or path
        match = re.search(rf"{re.escape(stem)}\.so\.(\d+\.\d+(?:\.\d+)?)$", final)
        if match is None:
            # Some images copy the library instead of linking: look for its versioned sibling.
            directory = os.path.dirname(path)
            for sibling in sorted(glob.glob(str(self.root / directory / f"{stem}.so.*.*"))):
                match = re.search(r"\.so\.(\d+\.\d+(?:\.\d+)?)$", sibling)
                if match:
                    break
        return path, match.group(1) if match else None


def read_env(root: Root) -> dict[str, str]:
    """The environment: `ROOT/proc/self/environ` when present (a captured tree), else ours."""
    raw = None
    if root.path != Path("/"):
        try:
            raw = (root / "proc/self/environ").read_bytes()
        except OSError:
            raw = None
    if raw is None:
        return dict(os.environ)
    env: dict[str, str] = {}
    for item in raw.split(b"\0"):
        if b"=" in item:
            key, _, value = item.partition(b"=")
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env


def detect_mode(root: Root, env: dict[str, str]) -> tuple[Mode, list[str]]:
    evidence = []
    if (root / ".dockerenv").exists():
        evidence.append("/.dockerenv exists")
    if (root / "run/.containerenv").exists():
        evidence.append("/run/.containerenv exists (podman)")
    if "KUBERNETES_SERVICE_HOST" in env:
        evidence.append("KUBERNETES_SERVICE_HOST is set")
    if env.get("container"):
        evidence.append(f"container={env['container']} is set")
    cgroup = root.read_text("proc/1/cgroup") or ""
    if re.search(r"docker|kubepods|containerd|libpod|crio", cgroup):
        evidence.append("/proc/1/cgroup names a container runtime")
    return ("container" if evidence else "host"), evidence


def _ld_conf_dirs(root: Root) -> list[str]:
    dirs = []
    for conf in sorted(glob.glob(str(root / "etc/ld.so.conf.d/*.conf"))):
        try:
            lines = Path(conf).read_text().splitlines()
        except OSError:
            continue
        dirs += [ln.strip() for ln in lines if ln.strip().startswith("/")]
    return dirs


def gather(ctx: Context) -> Context:
    """Fill in the shared facts."""
    text = ctx.root.read_text("proc/driver/nvidia/version") or ""
    match = _KERNEL_RE.search(text)
    ctx.kernel_version = match.group(1) if match else None
    for info in sorted(glob.glob(str(ctx.root / "proc/driver/nvidia/gpus/*/information"))):
        fields = {}
        for line in Path(info).read_text(errors="replace").splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        ctx.gpus.append(
            GpuInfo(fields.get("Model"), fields.get("GPU UUID"), Path(info).parent.name)
        )
    dev = ctx.root / "dev"
    names = (
        sorted(
            (p.name for p in dev.iterdir() if _DEVICE_RE.match(p.name)),
            key=lambda n: int(n[6:]),
        )
        if dev.is_dir()
        else []
    )
    ctx.device_nodes = [f"/dev/{n}" for n in names]
    ld_path = [d for d in ctx.env.get("LD_LIBRARY_PATH", "").split(":") if d.startswith("/")]
    ctx.lib_dirs = list(dict.fromkeys([*ld_path, *_ld_conf_dirs(ctx.root), *LIB_DIRS]))
    return ctx
