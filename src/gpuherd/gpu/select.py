"""Choose the GPU backend named on the command line. `auto` never falls back silently."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from gpuherd.gpu.base import BackendUnavailable, GpuBackend

BackendName = Literal["auto", "nvml", "sim"]


def open_backend(name: BackendName, *, sim_dir: Path | None = None) -> GpuBackend:
    """Open `nvml`, `sim`, or for `auto` NVML, with a hint to pass `--backend sim` if it fails."""
    if name == "sim":
        from gpuherd.gpu.sim import SimBackend, default_sim_dir

        return SimBackend(sim_dir or default_sim_dir())
    from gpuherd.gpu.nvml import NvmlBackend

    try:
        return NvmlBackend()
    except BackendUnavailable as exc:
        if name == "auto":
            raise BackendUnavailable(
                f"no NVIDIA GPU backend: {exc.message}",
                f"{exc.hint} (auto never falls back to simulated GPUs on its own)",
            ) from None
        raise
