"""Builders for captured filesystem trees (the `--root` of `gpuherd doctor`)."""

from __future__ import annotations

import os
from pathlib import Path

LIB = "usr/lib/x86_64-linux-gnu"
UUID = "GPU-5c3e8f0a-1b2c-4d5e-8f9a-0b1c2d3e4f5a"
KERNEL_VERSION_TEXT = (
    "NVRM version: NVIDIA UNIX x86_64 Kernel Module  {v}  Thu Feb 22 01:44:30 UTC 2024\n"
    "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"
)
GPU_INFO_TEXT = (
    "Model: \t\t NVIDIA GeForce RTX 3080 Ti\nIRQ:   \t\t 145\nGPU UUID: \t {uuid}\n"
    "Video BIOS: \t 94.02.71.00.d7\nBus Type: \t PCIe\nDMA Size: \t 47 bits\n"
)


class Tree:
    def __init__(self, root: Path) -> None:
        self.root = root

    def file(self, inner: str, text: str = "", mode: int = 0o644) -> Tree:
        path = self.root / inner
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
        return self

    def link(self, inner: str, target: str) -> Tree:
        path = self.root / inner
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        os.symlink(target, path)
        return self

    def env(self, **values: str) -> Tree:
        data = "".join(f"{k}={v}\0" for k, v in {"PATH": "/usr/bin:/bin", **values}.items())
        return self.file("proc/self/environ", data)

    def devices(self, count: int = 1, *, uvm: bool = True) -> Tree:
        self.file("dev/nvidiactl")
        if uvm:
            self.file("dev/nvidia-uvm")
        for i in range(count):
            self.file(f"dev/nvidia{i}")
        return self

    def driver(self, version: str = "550.54.14") -> Tree:
        self.file("proc/driver/nvidia/version", KERNEL_VERSION_TEXT.format(v=version))
        return self.file(
            "proc/driver/nvidia/gpus/0000:01:00.0/information", GPU_INFO_TEXT.format(uuid=UUID)
        )

    def libs(self, version: str = "550.54.14") -> Tree:
        for stem in ("libnvidia-ml", "libcuda"):
            self.file(f"{LIB}/{stem}.so.{version}", "\x7fELF")
            self.link(f"{LIB}/{stem}.so.1", f"{stem}.so.{version}")
        return self

    def toolkit(self, config: str | None = None) -> Tree:
        for name in (
            "nvidia-ctk",
            "nvidia-container-runtime",
            "nvidia-container-runtime-hook",
            "runc",
        ):
            self.file(f"usr/bin/{name}", "\x7fELF", 0o755)
        self.file(
            "etc/nvidia-container-runtime/config.toml",
            config
            if config is not None
            else (
                "accept-nvidia-visible-devices-envvar-when-unprivileged = false\n\n"
                '[nvidia-container-runtime]\nmode = "auto"\nruntimes = ["docker-runc", "runc", "crun"]\n'
            ),
        )
        return self

    def nvidia_egl(self) -> Tree:
        self.file(
            "usr/share/glvnd/egl_vendor.d/10_nvidia.json",
            '{"file_format_version": "1.0.0", "ICD": {"library_path": "libEGL_nvidia.so.0"}}',
        )
        self.file(f"{LIB}/libEGL_nvidia.so.550.54.14", "\x7fELF")
        self.link(f"{LIB}/libEGL_nvidia.so.0", "libEGL_nvidia.so.550.54.14")
        return self.file("usr/share/vulkan/icd.d/nvidia_icd.json", "{}")

    def mesa_egl(self) -> Tree:
        return self.file(
            "usr/share/glvnd/egl_vendor.d/50_mesa.json",
            '{"ICD": {"library_path": "libEGL_mesa.so.0"}}',
        )


def healthy_host(root: Path) -> Tree:
    tree = Tree(root).devices().driver().libs().toolkit().env()
    tree.file("proc/1/cgroup", "0::/init.scope\n")
    return tree.file(
        "etc/docker/daemon.json",
        '{"runtimes": {"nvidia": {"path": "nvidia-container-runtime", "runtimeArgs": []}}}',
    )


def healthy_container(root: Path, **env: str) -> Tree:
    tree = Tree(root).file(".dockerenv").devices().driver().libs()
    return tree.env(
        **{
            "NVIDIA_VISIBLE_DEVICES": UUID,
            "NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
            "CUDA_VERSION": "12.4.1",
            "NVIDIA_REQUIRE_CUDA": "cuda>=12.4 brand=tesla,driver>=470,driver<471",
            **env,
        }
    )
