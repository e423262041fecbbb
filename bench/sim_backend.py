"""How long one full snapshot read of the sim backend takes (target: median < 20 ms).

Setup: 64 simulated devices and 1,000 holder records, each owned by a live `sleep` process, so
every read checks 1,000 real pids and reads 1,000 command lines, as `gpuherd gpus` does.
Peer, in the same run: the same read done the straightforward way, with psutil.Process objects
for liveness and command lines, to show what the direct /proc reads buy.

    .venv/bin/python bench/sim_backend.py [--devices 64] [--holders 1000] [--reads 200]
    .venv/bin/python bench/sim_backend.py --backend nvml     # on a machine with an NVIDIA GPU

A reader caches each process's command line (fixed for its lifetime), so repeated reads
(`gpus --watch`, the broker's poll) cost less than the first; the cold line opens a new reader
for every read.

Writes bench/results/sim_backend.json (or nvml_backend.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from gpuherd.gpu.sim import SimHost

RESULTS = Path(__file__).parent / "results"


def _timings(read: Callable[[], object], reads: int) -> dict[str, float]:
    read()  # warm caches once, as a long-running `gpus --watch` would be
    samples = []
    for _ in range(reads):
        start = time.perf_counter()
        read()
        samples.append((time.perf_counter() - start) * 1000.0)
    samples.sort()
    return {
        "median_ms": round(statistics.median(samples), 3),
        "p95_ms": round(samples[int(len(samples) * 0.95) - 1], 3),
        "min_ms": round(samples[0], 3),
        "reads": reads,
    }


def _psutil_peer(host: SimHost) -> Callable[[], object]:
    """Liveness and cmdline per holder through psutil, as a first implementation would."""

    def read() -> object:
        rows = host._conn.execute("SELECT pid, start_ticks, gpu, bytes FROM holders").fetchall()
        used: dict[int, int] = {}
        procs = []
        for pid, _ticks, gpu, nbytes in rows:
            try:
                proc = psutil.Process(pid)
                proc.create_time()
                cmdline = proc.cmdline()
            except psutil.Error:
                continue
            used[gpu] = used.get(gpu, 0) + nbytes
            procs.append((pid, cmdline))
        return used, procs

    return read


def bench_sim(devices: int, holders: int, reads: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="gpuherd-bench-"))
    host = SimHost.init(workdir, [(f"Sim GPU {i}", 80 * 1024**3) for i in range(devices)])
    sleepers = [
        subprocess.Popen(["sleep", "600"], stdout=subprocess.DEVNULL) for _ in range(holders)
    ]
    try:
        for i, proc in enumerate(sleepers):
            host.allocate(pid=proc.pid, gpu=i % devices, nbytes=64 * 1024**2, name=f"h{i}")
        snap = host.snapshot()
        assert len(snap.processes) == holders, len(snap.processes)
        assert len(snap.devices) == devices
        ours = _timings(host.snapshot, reads)
        # Cold: a fresh reader each time (one-shot `gpuherd gpus`), no cached command lines.
        cold = _timings(lambda: SimHost(workdir).snapshot(), max(reads // 4, 10))
        peer = _timings(_psutil_peer(host), reads)
    finally:
        for proc in sleepers:
            proc.kill()
        for proc in sleepers:
            proc.wait()
        host.close()
    return {
        "benchmark": "sim_backend_snapshot",
        "devices": devices,
        "holders": holders,
        "gpuherd_sim_snapshot": ours,
        "gpuherd_sim_snapshot_cold_reader": cold,
        "peer_psutil_read": peer,
        "target_median_ms": 20.0,
        "meets_target": ours["median_ms"] < 20.0,
    }


def bench_nvml(reads: int) -> dict[str, Any]:
    from gpuherd.gpu.nvml import NvmlBackend

    backend = NvmlBackend()
    try:
        snap = backend.snapshot()
        result = _timings(backend.snapshot, reads)
    finally:
        backend.close()
    return {
        "benchmark": "nvml_backend_snapshot",
        "devices": len(snap.devices),
        "processes": len(snap.processes),
        "driver_version": snap.driver_version,
        "gpu": [d.name for d in snap.devices],
        "gpuherd_nvml_snapshot": result,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sim", "nvml"], default="sim")
    parser.add_argument("--devices", type=int, default=64)
    parser.add_argument("--holders", type=int, default=1000)
    parser.add_argument("--reads", type=int, default=200)
    args = parser.parse_args()
    if args.backend == "sim":
        result = bench_sim(args.devices, args.holders, args.reads)
    else:
        result = bench_nvml(args.reads)
    result["machine"] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": psutil.cpu_count(),
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{args.backend}_backend.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
