"""Suspend and resume a real CUDA process through gpuherd (target: each >= 50% of a pinned-memory
device-to-host copy at 16 GiB).

For each size (1, 4, 16 GiB): a worker process allocates N GiB on the GPU with known contents
(torch, else cupy) and times a pinned-memory device-to-host copy of the same N GiB (the physical
bound of the host link, the peer, measured in the same run and process). Then gpuherd suspends it
(lock + checkpoint), the benchmark asserts through NVML that the memory is released and the
process alive, resumes it (restore + unlock), and asserts the contents intact byte for byte and
the process computing again.

    .venv/bin/pip install -e '.[cuda]' torch     # or cupy-cuda12x; or cuda-checkpoint on PATH
    sudo nvidia-smi -pm 1                        # the driver's checkpoint API wants it, and root
    sudo .venv/bin/python bench/gpu_checkpoint.py [--sizes 1,4,16] [--gpu 0]

Writes bench/results/gpu_checkpoint.json. Without an NVIDIA GPU, torch/cupy or a checkpoint API
it says which is missing and exits 3.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

RESULTS = Path(__file__).parent / "results"
GIB = 1024**3
CHUNK = 256 * 1024**2  # fill and verify in 256 MiB slices: no full-size temporaries


# --- the worker: runs in its own process, holds the memory ---------------------------------


def _worker_torch(gib: float, gpu: int, out: IO[str]) -> None:
    torch = importlib.import_module("torch")  # optional: not a gpuherd dependency

    dev = torch.device(f"cuda:{gpu}")
    n = int(gib * GIB)

    def pattern(start: int, size: int) -> Any:
        idx = torch.arange(start, start + size, device=dev, dtype=torch.int64)
        return ((idx * 2654435761) >> 7).to(torch.uint8)

    data = torch.empty(n, dtype=torch.uint8, device=dev)
    for start in range(0, n, CHUNK):
        size = min(CHUNK, n - start)
        data[start : start + size] = pattern(start, size)
    torch.cuda.synchronize(dev)

    def peer() -> float:
        host = torch.empty(n, dtype=torch.uint8, pin_memory=True)
        host.copy_(data, non_blocking=True)  # warm the path once
        torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        host.copy_(data, non_blocking=True)
        torch.cuda.synchronize(dev)
        seconds = time.perf_counter() - t0
        del host  # give the pinned pages back before the checkpoint needs host RAM
        return n / seconds / 1e9

    def check() -> bool:
        same = all(
            torch.equal(data[s : s + min(CHUNK, n - s)], pattern(s, min(CHUNK, n - s)))
            for s in range(0, n, CHUNK)
        )
        a = torch.ones((1024, 1024), device=dev)
        computes = float((a @ a).sum().item()) == 1024.0**3
        return same and computes

    _serve(out, peer, check)


def _worker_cupy(gib: float, gpu: int, out: IO[str]) -> None:
    cupy = importlib.import_module("cupy")

    cupy.cuda.Device(gpu).use()
    n = int(gib * GIB)

    def pattern(start: int, size: int) -> Any:
        idx = cupy.arange(start, start + size, dtype=cupy.int64)
        return ((idx * 2654435761) >> 7).astype(cupy.uint8)

    data = cupy.empty(n, dtype=cupy.uint8)
    for start in range(0, n, CHUNK):
        size = min(CHUNK, n - start)
        data[start : start + size] = pattern(start, size)
    cupy.cuda.Device(gpu).synchronize()

    def peer() -> float:
        pinned = cupy.cuda.alloc_pinned_memory(n)
        stream = cupy.cuda.Stream(non_blocking=True)
        data.data.copy_to_host_async(pinned.ptr, n, stream)
        stream.synchronize()
        t0 = time.perf_counter()
        data.data.copy_to_host_async(pinned.ptr, n, stream)
        stream.synchronize()
        seconds = time.perf_counter() - t0
        del pinned
        return n / seconds / 1e9

    def check() -> bool:
        same = all(
            bool((data[s : s + min(CHUNK, n - s)] == pattern(s, min(CHUNK, n - s))).all())
            for s in range(0, n, CHUNK)
        )
        a = cupy.ones((1024, 1024), dtype=cupy.float32)
        computes = float((a @ a).sum()) == 1024.0**3
        return same and computes

    _serve(out, peer, check)


def _serve(out: IO[str], peer: Any, check: Any) -> None:
    """Line protocol on stdin/stdout: peer -> GB/s, check -> ok|bad, exit."""
    print(f"ready {os.getpid()}", file=out, flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "peer":
            print(f"{peer():.3f}", file=out, flush=True)
        elif command == "check":
            print("ok" if check() else "bad", file=out, flush=True)
        elif command == "exit":
            return


# --- the driver: runs gpuherd against the worker ---------------------------------------------


class Worker:
    def __init__(self, lib: str, gib: float, gpu: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", lib, "--gib", str(gib), "--gpu", str(gpu)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self._read()
        if not line.startswith("ready"):
            raise RuntimeError(f"worker did not start: {line!r}")
        self.pid = self.proc.pid

    def _read(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def ask(self, command: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.ask("exit")
                self.proc.wait(timeout=60)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def _library() -> str | None:
    for lib in ("torch", "cupy"):
        try:
            importlib.import_module(lib)
        except ImportError:
            continue
        return lib
    return None


def _no(message: str) -> None:
    print(f"gpu_checkpoint: {message}", file=sys.stderr)
    sys.exit(3)


def run_size(lib: str, gib: float, gpu: int, engine: Any, gpus: Any) -> dict[str, Any]:
    from gpuherd.checkpoint import resume, suspend

    worker = Worker(lib, gib, gpu)
    try:
        peer = float(worker.ask("peer"))
        before = gpus.snapshot()
        t0 = time.perf_counter()
        done = suspend(engine, gpus, pid=worker.pid, lock_timeout=30)
        suspend_s = time.perf_counter() - t0
        during = gpus.snapshot()
        released = not any(p.pid == worker.pid for p in during.processes)
        dev_before, dev_during = before.device(gpu), during.device(gpu)
        freed = (
            (dev_before.memory_used - dev_during.memory_used) if dev_before and dev_during else 0
        )
        alive = worker.proc.poll() is None
        t1 = time.perf_counter()
        back = resume(engine, gpus, pid=worker.pid, record=done)
        resume_s = time.perf_counter() - t1
        intact = worker.ask("check") == "ok"
        nbytes = done.bytes
        return {
            "gib": gib,
            "bytes": nbytes,
            "peer_pinned_d2h_gbps": peer,
            "checkpoint_s": done.checkpoint_s,
            "suspend_s": suspend_s,
            "suspend_gbps": nbytes / done.checkpoint_s / 1e9,
            "restore_s": back.restore_s,
            "resume_s": resume_s,
            "resume_gbps": nbytes / back.restore_s / 1e9,
            "nvml_released": released,
            "nvml_freed_bytes": freed,
            "alive_while_suspended": alive,
            "contents_intact_and_computing": intact,
            "notes": list(done.notes),
        }
    finally:
        worker.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="1,4,16", help="GiB per run, comma-separated")
    parser.add_argument("--gpu", type=int, default=0)
    parser.add_argument("--worker", choices=["torch", "cupy"], help=argparse.SUPPRESS)
    parser.add_argument("--gib", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        (_worker_torch if args.worker == "torch" else _worker_cupy)(args.gib, args.gpu, sys.stdout)
        return

    from gpuherd.checkpoint import NoCheckpointApi, open_engine
    from gpuherd.gpu.base import BackendUnavailable
    from gpuherd.gpu.select import open_backend

    try:
        gpus = open_backend("nvml")
    except BackendUnavailable as exc:
        _no(f"needs an NVIDIA GPU: {exc.message}")
    lib = _library()
    if lib is None:
        _no("needs torch or cupy to allocate GPU memory with known contents")
    try:
        engine = open_engine("nvml")
    except NoCheckpointApi as exc:
        _no(f"{exc.message} ({exc.hint})")
    assert lib is not None
    snap = gpus.snapshot()
    device = snap.device(args.gpu)
    if device is None:
        _no(f"no GPU {args.gpu} here")
    assert device is not None
    rows = []
    for size in (float(s) for s in args.sizes.split(",")):
        if size * GIB > device.memory_free * 0.9:
            print(f"skipping {size:g} GiB: GPU {args.gpu} has too little free memory")
            continue
        rows.append(run_size(lib, size, args.gpu, engine, gpus))
        row = rows[-1]
        print(
            f"{row['gib']:>6g} GiB  pinned D2H {row['peer_pinned_d2h_gbps']:6.1f} GB/s  "
            f"suspend {row['suspend_gbps']:6.1f} GB/s ({row['suspend_s']:.2f}s)  "
            f"resume {row['resume_gbps']:6.1f} GB/s ({row['resume_s']:.2f}s)  "
            f"released={row['nvml_released']} alive={row['alive_while_suspended']} "
            f"intact={row['contents_intact_and_computing']}",
            flush=True,
        )
    _report(rows, engine.name, lib, device.name, snap.driver_version)


def _report(
    rows: list[dict[str, Any]], engine: str, lib: str, gpu: str, driver: str | None
) -> None:
    print()
    print("| size | pinned D2H (peer) | suspend | resume | suspend/peer | resume/peer | checks |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        peer = r["peer_pinned_d2h_gbps"]
        ok = (
            r["nvml_released"] and r["alive_while_suspended"] and r["contents_intact_and_computing"]
        )
        print(
            f"| {r['gib']:g} GiB | {peer:.1f} GB/s | {r['suspend_gbps']:.1f} GB/s | "
            f"{r['resume_gbps']:.1f} GB/s | {r['suspend_gbps'] / peer:.0%} | "
            f"{r['resume_gbps'] / peer:.0%} | {'pass' if ok else 'FAIL'} |"
        )
    big = [r for r in rows if r["gib"] >= 16]
    if big:
        r = big[-1]
        peer = r["peer_pinned_d2h_gbps"]
        met = r["suspend_gbps"] >= 0.5 * peer and r["resume_gbps"] >= 0.5 * peer
        verdict = "met" if met else "NOT met"
        print(f"\ntarget (suspend and resume >= 50% of pinned D2H at 16 GiB): {verdict}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "gpu_checkpoint.json"
    out.write_text(
        json.dumps(
            {
                "machine": {"gpu": gpu, "driver": driver, "python": platform.python_version()},
                "engine": engine,
                "allocator": lib,
                "runs": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
