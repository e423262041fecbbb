"""A simulated CUDA process that also maps files, as a real one maps libnccl.so or a /dev/shm
segment: it holds VRAM on each --gpu, prints `holding`, and releases on SIGTERM."""

from __future__ import annotations

import argparse
import mmap
import os
import signal
import sys
import threading
from pathlib import Path

from gpuherd.gpu.sim import SimHost


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sim-dir", type=Path, required=True)
    parser.add_argument("--gpu", type=int, action="append", default=[])
    parser.add_argument("--vram", type=int, required=True)
    parser.add_argument("--map", type=Path, action="append", default=[])
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    maps = []
    for path in args.map:
        with path.open("r+b") as f:
            maps.append(mmap.mmap(f.fileno(), 0))
    pid = os.getpid()
    with SimHost(args.sim_dir) as host:
        try:
            for gpu in args.gpu or [0]:
                host.allocate(pid=pid, gpu=gpu, nbytes=args.vram)
            print(f"holding (pid {pid})", flush=True)
            stop.wait()
        finally:
            host.forget(pid=pid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
