"""Safety checks before a suspend or resume: what /proc shows about the target, and the driver
facts the checkpoint API depends on. Each check returns reasons (refuse) or notes (tell)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from gpuherd.gpu.base import GpuProcess
from gpuherd.gpu.procinfo import ROOT, read_cgroup, read_stat
from gpuherd.units import format_bytes

__all__ = [
    "MIN_DRIVER",
    "ProcFacts",
    "driver_notes",
    "read_proc_facts",
    "suspend_refusals",
]

# Before 575.57.08, partial GPU passthrough in containers and PyTorch processes failed to
# checkpoint.
MIN_DRIVER = (575, 57, 8)

_NCCL = re.compile(r"/libnccl[^/]*\.so")
# NCCL's shared-memory transport and CUDA IPC segments: memory another process also maps, which
# a checkpoint cannot carry.
_IPC = re.compile(r"/dev/shm/(nccl-|cuda\.shm)")  # noqa: S108 - a pattern we look for


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcFacts:
    """What /proc says about one process; `maps_readable` False means the checks were blind."""

    exists: bool
    stopped: bool  # SIGSTOPped or in a frozen cgroup: the CUDA restore thread cannot run
    maps_readable: bool
    nccl: tuple[str, ...] = ()
    ipc: tuple[str, ...] = ()


def _frozen(pid: int, root: Path) -> bool:
    cgroup = read_cgroup(pid, root)
    if not cgroup:
        return False
    for line in cgroup.splitlines():
        hierarchy, _, path = line.partition("::")
        if hierarchy == "0" and path:
            events = root / "sys/fs/cgroup" / path.lstrip("/") / "cgroup.events"
            try:
                return "frozen 1" in events.read_text()
            except OSError:
                return False
        if ":freezer:" in line:
            state = root / "sys/fs/cgroup/freezer" / line.split(":", 2)[2].lstrip("/")
            try:
                return (state / "freezer.state").read_text().strip() != "THAWED"
            except OSError:
                return False
    return False


def read_proc_facts(pid: int, root: Path = ROOT) -> ProcFacts:
    stat = read_stat(pid, root)
    if stat is None or stat.state in ("Z", "X"):
        return ProcFacts(exists=False, stopped=False, maps_readable=False)
    stopped = stat.state in ("T", "t") or _frozen(pid, root)
    try:
        maps = (root / f"proc/{pid}/maps").read_text(errors="replace")
    except OSError:
        return ProcFacts(exists=True, stopped=stopped, maps_readable=False)
    paths = sorted({line.split(maxsplit=5)[-1] for line in maps.splitlines() if "/" in line})
    return ProcFacts(
        exists=True,
        stopped=stopped,
        maps_readable=True,
        nccl=tuple(p for p in paths if _NCCL.search(p)),
        ipc=tuple(p for p in paths if _IPC.search(p)),
    )


def stopped_reason(pid: int) -> str:
    return (
        f"process {pid} is stopped (SIGSTOP or a frozen cgroup); the CUDA restore thread must "
        f"run: `kill -CONT {pid}` or thaw its cgroup first"
    )


def suspend_refusals(
    *,
    pid: int,
    facts: ProcFacts,
    on_gpus: list[GpuProcess],
    host_available: int,
    host_margin: int,
) -> list[str]:
    """Every reason not to suspend `pid`; empty means go ahead."""
    if not facts.exists:
        return [f"no process {pid}"]
    reasons = []
    if not on_gpus:
        reasons.append(f"process {pid} is not a CUDA process: it holds no context on any GPU")
    gpus = sorted({p.gpu_index for p in on_gpus})
    if len(gpus) > 1:
        listed = ", ".join(str(g) for g in gpus)
        reasons.append(
            f"process {pid} uses {len(gpus)} GPUs ({listed}); gpuherd suspends single-GPU "
            "processes only"
        )
    if facts.nccl:
        reasons.append(
            f"process {pid} loads NCCL ({facts.nccl[0]}); multi-process collectives cannot be "
            "checkpointed"
        )
    if facts.ipc:
        reasons.append(
            f"process {pid} shares GPU memory with other processes ({facts.ipc[0]}); CUDA IPC "
            "cannot be checkpointed"
        )
    if facts.stopped:
        reasons.append(stopped_reason(pid))
    if on_gpus and any(p.used_bytes is None for p in on_gpus):
        reasons.append(
            f"the driver does not tell how much memory process {pid} holds, so host RAM "
            "cannot be checked"
        )
    elif on_gpus:
        need = sum(p.used_bytes or 0 for p in on_gpus)
        if host_available < need + host_margin:
            reasons.append(
                f"host RAM: {format_bytes(host_available)} available, the checkpoint needs "
                f"{format_bytes(need)} plus a {format_bytes(host_margin)} margin"
            )
    return reasons


def _version(text: str | None) -> tuple[int, ...] | None:
    if not text or not re.fullmatch(r"\d+(\.\d+)*", text):
        return None
    return tuple(int(part) for part in text.split("."))


def driver_notes(
    *,
    engine: str,
    driver_version: str | None,
    persistence: bool | None,
    facts: ProcFacts,
) -> list[str]:
    """What the user should know about this host's driver; none of these refuse."""
    if engine == "sim":
        return []
    notes = []
    version = _version(driver_version)
    if version is not None and version < MIN_DRIVER:
        notes.append(
            f"driver {driver_version} is older than 575.57.08: partial GPU passthrough in "
            "containers and PyTorch processes failed to checkpoint before it"
        )
    if os.geteuid() != 0:
        notes.append("not running as root: the driver's checkpoint API needs root")
    if persistence is False:
        notes.append("persistence mode is off: enable it with `sudo nvidia-smi -pm 1`")
    if facts.exists and not facts.maps_readable:
        notes.append("cannot read /proc/PID/maps (run as root): NCCL and IPC use were not checked")
    return notes
