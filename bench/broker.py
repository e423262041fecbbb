"""The broker as a real `gpuherd serve` process on the sim GPU: overhead, idle cost, load.

overhead  submit -> job process started, with one `signal` preemption, minus the time the
          victim process itself took to exit (target: median < 300 ms). Peer in the same run:
          a hand-written script doing the same (TERM the victim, wait for it, start the job).
idle      CPU share of one core and RSS of an idle broker at a 1 s poll (targets: < 1%,
          < 100 MB). Peer: a bare Python loop reading the same sim GPU every second.
load      500 jobs submitted concurrently through the API: every one reaches a final state,
          none lost or run twice; throughput. Peer: the same 500 commands started directly.
submit    `submit` latency while the engine is inside a 20 s release (target: p99 < 100 ms).
inflight  `submit` latency with 1, 200 and 500 submissions in flight at once (target: p99 <
          500 ms at 500), and every one held once in the journal. Two load generators side by
          side: 500 connections opened first, then one request each from one asyncio loop
          (what the broker adds: the generator costs microseconds a request), and 500 threads
          each with gpuherd's own Client (the generator competes for the GIL and the 2 cores).

    .venv/bin/python bench/broker.py [--rounds 30] [--idle-seconds 30] [--jobs 500] [--only X]

Writes bench/results/broker.json (bench/results/broker-X.json with --only X).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil

from gpuherd.api.client import Client
from gpuherd.gpu.procinfo import start_ticks
from gpuherd.gpu.sim import SimHost

GIB = 1024**3
RESULTS = Path(__file__).parent / "results"
GPUHERD = [sys.executable, "-m", "gpuherd"]


class Broker:
    """`gpuherd serve` on a fresh sim host in a temporary directory."""

    def __init__(self, root: Path, config: str) -> None:
        self.root = root
        self.sim = root / "sim"
        SimHost.init(self.sim, [("NVIDIA GeForce RTX 3080 Ti", 12 * GIB)]).close()
        (root / "gpuherd.yaml").write_text(config.replace("HOLD", repr(self.hold_argv())))
        self.sock = root / "gpuherd.sock"
        where = ["--sim-dir", str(self.sim), "--state", str(root / "state"), "--socket"]
        self.proc = subprocess.Popen(
            [
                *GPUHERD,
                "serve",
                "-c",
                str(root / "gpuherd.yaml"),
                "--backend",
                "sim",
                *where,
                str(self.sock),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert json.loads(self.proc.stdout.readline())["event"] == "listening"
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()  # its event log
        self.client = self.new_client()

    def hold_argv(self) -> list[str]:
        return [*GPUHERD, "sim", "hold", "--sim-dir", str(self.sim)]

    def new_client(self) -> Client:
        return Client(socket=self.sock, timeout=120)

    def events(self, since: float = 0.0) -> list[dict[str, Any]]:
        return self.client.events(since=since)

    def wait_final(self, job_id: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.client.job(job_id)
            if job["state"] in ("succeeded", "failed", "cancelled"):
                return job
            time.sleep(0.02)
        raise TimeoutError(job_id)

    def close(self) -> None:
        self.client.close()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


def holder_pid(sim: Path, name: str, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    with SimHost(sim) as host:
        while time.monotonic() < deadline:
            for proc in host.snapshot().processes:
                if proc.name == name:
                    return proc.pid
            time.sleep(0.01)
    raise TimeoutError(name)


def exit_time(pid: int, result: list[float]) -> None:
    """When `pid` is gone (or a zombie), polled every millisecond from a thread."""
    ticks = start_ticks(pid)
    while start_ticks(pid) == ticks and ticks is not None:
        time.sleep(0.001)
    result.append(time.time())


OVERHEAD_CONFIG = """\
version: 1
gpus: [{name: gpu0, index: 0}]
broker: {poll_interval: 1s}
tenants:
  victim:
    gpu: gpu0
    vram: 8GiB
    priority: 10
    cooldown: 0s
    match: {cmdline: "--name victim"}
    preempt: [{signal: {grace: 10s, start: HOLD_VICTIM}}]
jobs:
  probe: {gpu: gpu0, vram: 6GiB, priority: 50, timeout: 60s, command: [/bin/true]}
"""


def overhead(rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        hold = [*GPUHERD, "sim", "hold", "--sim-dir", str(root / "sim")]
        victim_argv = [*hold, "--vram", "8GiB", "--name", "victim"]
        config = OVERHEAD_CONFIG.replace("HOLD_VICTIM", json.dumps(victim_argv))
        broker = Broker(root, config)
        first = subprocess.Popen(victim_argv, stdout=subprocess.DEVNULL)
        ours, victim_exit = [], []
        try:
            for _ in range(rounds):
                pid = holder_pid(broker.sim, "victim")
                time.sleep(0.2)  # let the restored victim settle, as a long-running one would
                gone: list[float] = []
                watcher = threading.Thread(target=exit_time, args=(pid, gone))
                watcher.start()
                t_submit = time.time()
                job_id = broker.client.submit({"name": "probe"})
                job = broker.wait_final(job_id)
                watcher.join()
                assert job["state"] == "succeeded", job
                events = [e for e in broker.events(t_submit - 1) if e["job"] == job_id]
                t_intent = next(e["at"] for e in events if e["kind"] == "release_intent")
                t_running = next(e["at"] for e in events if e["kind"] == "job_running")
                exit_s = gone[0] - t_intent
                victim_exit.append(exit_s)
                ours.append((t_running - t_submit - exit_s) * 1000)
        finally:
            broker.close()
            first.wait(timeout=10)
            for proc in SimHost(root / "sim").snapshot().processes:
                os.kill(proc.pid, signal.SIGTERM)
        peer = overhead_peer(rounds, hold)
    return {
        "rounds": rounds,
        "gpuherd_median_ms": round(statistics.median(ours), 1),
        "gpuherd_p95_ms": round(sorted(ours)[max(int(len(ours) * 0.95) - 1, 0)], 1),
        "victim_exit_median_ms": round(statistics.median(victim_exit) * 1000, 1),
        "peer_script_median_ms": round(statistics.median(peer), 1),
        "target_median_ms": 300.0,
    }


def overhead_peer(rounds: int, hold: list[str]) -> list[float]:
    """The same work by hand: TERM the victim, wait until it is gone, start the job."""
    with tempfile.TemporaryDirectory() as tmp:
        sim = Path(tmp) / "sim"
        SimHost.init(sim, [("NVIDIA GeForce RTX 3080 Ti", 12 * GIB)]).close()
        hold = [*hold[:-1], str(sim)]
        out = []
        for _ in range(rounds):
            victim = subprocess.Popen(
                [*hold, "--vram", "8GiB", "--name", "victim"], stdout=subprocess.DEVNULL
            )
            holder_pid(sim, "victim")
            t0 = time.time()
            victim.send_signal(signal.SIGTERM)
            victim.wait()
            t_exit = time.time()
            job = subprocess.Popen(["/bin/true"])
            t_started = time.time()
            job.wait()
            out.append((t_started - t0 - (t_exit - t0)) * 1000)
    return out


IDLE_CONFIG = """\
version: 1
gpus: [{name: gpu0, index: 0}]
broker: {poll_interval: 1s}
tenants:
  plex: {gpu: gpu0, vram: 2GiB, priority: 100, preemptible: false, match: {cmdline: "--name plex"}}
  whisper: {gpu: gpu0, vram: 3GiB, priority: 20, match: {cmdline: "--name whisper"}}
  ollama: {gpu: gpu0, vram: 4GiB, priority: 10, match: {cmdline: "--name ollama"}}
jobs:
  render: {gpu: gpu0, vram: 6GiB, priority: 50, command: [/bin/true], schedule: "0 4 * * *"}
"""


def cpu_and_rss(pid: int, seconds: float) -> tuple[float, float]:
    proc = psutil.Process(pid)
    before, t0 = proc.cpu_times(), time.monotonic()
    time.sleep(seconds)
    after, t1 = proc.cpu_times(), time.monotonic()
    used = (after.user - before.user) + (after.system - before.system)
    return 100 * used / (t1 - t0), proc.memory_info().rss / 1e6


PEER_LOOP = """\
import sys, time
from gpuherd.gpu.sim import SimBackend
backend = SimBackend(sys.argv[1])
while True:
    backend.snapshot()
    time.sleep(1)
"""


def idle(seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(Path(tmp), IDLE_CONFIG)
        tenants = [
            subprocess.Popen(
                [*broker.hold_argv(), "--vram", f"{gib}GiB", "--name", name],
                stdout=subprocess.DEVNULL,
            )
            for name, gib in (("plex", 2), ("whisper", 3), ("ollama", 4))
        ]
        try:
            time.sleep(3)  # past start-up
            cpu, rss = cpu_and_rss(broker.proc.pid, seconds)
            peer = subprocess.Popen([sys.executable, "-c", PEER_LOOP, str(broker.sim)])
            time.sleep(3)
            peer_cpu, peer_rss = cpu_and_rss(peer.pid, seconds)
            peer.terminate()
            peer.wait()
        finally:
            broker.close()
            for t in tenants:
                t.terminate()
                t.wait()
    return {
        "seconds": seconds,
        "gpuherd_cpu_percent": round(cpu, 3),
        "gpuherd_rss_mb": round(rss, 1),
        "peer_loop_cpu_percent": round(peer_cpu, 3),
        "peer_loop_rss_mb": round(peer_rss, 1),
        "target_cpu_percent": 1.0,
        "target_rss_mb": 100.0,
    }


LOAD_CONFIG = """\
version: 1
gpus: [{name: gpu0, index: 0}]
broker: {poll_interval: 1s}
jobs:
  tiny: {gpu: gpu0, vram: 64MiB, command: [/bin/true]}
"""


def load(n: int, threads: int = 32) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(Path(tmp), LOAD_CONFIG)
        local = threading.local()

        def submit(_i: int) -> str:
            if not hasattr(local, "client"):
                local.client = broker.new_client()
            job_id: str = local.client.submit({"name": "tiny"})
            return job_id

        t0 = time.monotonic()
        with ThreadPoolExecutor(threads) as pool:
            ids = list(pool.map(submit, range(n)))
        submitted_s = time.monotonic() - t0
        while broker.client.jobs():
            time.sleep(0.05)
        total_s = time.monotonic() - t0
        broker.close()
        db = sqlite3.connect(Path(tmp) / "state" / "journal.db")
        states = Counter(s for (s,) in db.execute("SELECT state FROM jobs"))
        starts = Counter(
            j for (j,) in db.execute("SELECT job_id FROM events WHERE kind = 'job_starting'")
        )
        db.close()
    assert len(set(ids)) == n, "duplicate ids"
    assert sum(states.values()) == n, f"{sum(states.values())} jobs in the journal, not {n}"
    assert set(starts) == set(ids), "a job never started"
    assert max(starts.values()) == 1, "a job started twice"
    t1 = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda _i: subprocess.run(["/bin/true"], check=True), range(n)))
    peer_s = time.monotonic() - t1
    return {
        "jobs": n,
        "client_threads": threads,
        "final_states": dict(states),
        "lost": n - sum(states.values()),
        "started_twice": sum(1 for c in starts.values() if c > 1),
        "submit_all_s": round(submitted_s, 2),
        "all_final_s": round(total_s, 2),
        "gpuherd_jobs_per_s": round(n / total_s, 1),
        "peer_direct_spawn_jobs_per_s": round(n / peer_s, 1),
    }


SLOW_RELEASE = """\
version: 1
gpus: [{name: gpu0, index: 0}]
tenants:
  slowpoke:
    gpu: gpu0
    vram: 10GiB
    match: {cmdline: "--name slowpoke"}
    release_timeout: 30s
    # A release that takes as long as a model server draining its requests.
    preempt: [{command: {release: [sleep, "20"], restore: ["true"]}}]
jobs:
  big: {gpu: gpu0, vram: 6GiB, priority: 50, command: HOLD}
  tiny: {gpu: gpu0, vram: 1MiB, command: ["true"]}
"""


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(1000 * statistics.median(ordered), 2),
        "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 2),
        "max_ms": round(1000 * ordered[-1], 2),
    }


def submit_during_release(n: int) -> dict[str, Any]:
    """`gpuherd submit` latency while a step is inside a 20 s release (target p99 < 100 ms),
    beside the same submissions to the same broker when it is idle."""
    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(Path(tmp), SLOW_RELEASE)
        holder = subprocess.Popen(
            [*broker.hold_argv(), "--vram", "10GiB", "--name", "slowpoke"], stdout=subprocess.PIPE
        )
        try:
            holder_pid(broker.sim, "slowpoke")

            def timed() -> float:
                t0 = time.perf_counter()
                broker.client.submit({"name": "tiny", "not_before": time.time() + 3600})
                return time.perf_counter() - t0

            idle_samples = [timed() for _ in range(n)]
            big = broker.client.submit({"name": "big"})
            while broker.client.job(big)["state"] != "releasing":
                time.sleep(0.01)
            busy_samples = [timed() for _ in range(n)]
            still = broker.client.job(big)["state"]
        finally:
            holder.terminate()
            holder.wait(timeout=30)
            broker.close()
    assert still == "releasing", f"the release ended before the samples did ({still})"
    return {
        "submissions": n,
        "during_release": _percentiles(busy_samples),
        "peer_idle_broker": _percentiles(idle_samples),
    }


QUICK = """\
version: 1
gpus: [{name: gpu0, index: 0}]
jobs:
  tiny: {gpu: gpu0, vram: 1MiB, command: ["true"]}
"""


async def _raw_submits(sock: Path, n: int) -> list[float]:
    """n connections opened first, then one POST each at once: the latency of each."""
    body = json.dumps({"name": "tiny", "not_before": time.time() + 3600}).encode()
    request = (
        b"POST /v1/jobs HTTP/1.1\r\nhost: gpuherd\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%b" % (len(body), body)
    )
    go = asyncio.Event()
    latencies: list[float] = []

    async def one() -> None:
        reader, writer = await asyncio.open_unix_connection(str(sock))
        await go.wait()
        t0 = time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        answer = await reader.readexactly(length)
        latencies.append(time.perf_counter() - t0)
        assert head.startswith(b"HTTP/1.1 201"), head
        assert b'"id"' in answer, answer
        writer.close()
        await writer.wait_closed()

    tasks = [asyncio.create_task(one()) for _ in range(n)]
    await asyncio.sleep(0.5 + n / 500)  # every connection open and accepted
    go.set()
    await asyncio.gather(*tasks)
    return latencies


def submit_in_flight(counts: list[int]) -> dict[str, Any]:
    """`submit` latency with N submissions in flight at once (target: p99 < 500 ms at 500).
    Every submission is held (its id in the journal), none lost or duplicated."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(Path(tmp), QUICK)
        try:
            for n in counts:
                start = threading.Barrier(n)
                latencies: list[float] = []
                ids: list[str] = []

                def one(
                    _i: int,
                    start: threading.Barrier = start,
                    latencies: list[float] = latencies,
                    ids: list[str] = ids,
                ) -> None:
                    with broker.new_client() as client:
                        start.wait()
                        t0 = time.perf_counter()
                        job_id = client.submit({"name": "tiny", "not_before": time.time() + 3600})
                        latencies.append(time.perf_counter() - t0)
                        ids.append(job_id)

                with ThreadPoolExecutor(n) as pool:
                    list(pool.map(one, range(n)))
                raw = asyncio.run(_raw_submits(broker.sock, n))
                out[str(n)] = {
                    "asyncio_connections": _percentiles(raw),
                    "client_threads": {**_percentiles(latencies), "held": len(set(ids))},
                }
            in_journal = len(broker.client.jobs())
        finally:
            broker.close()
    total = 2 * sum(counts)
    out["journal"] = {"submitted": total, "held": in_journal, "lost": total - in_journal}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--submits", type=int, default=200)
    parser.add_argument("--only", choices=["overhead", "idle", "load", "submit", "inflight"])
    args = parser.parse_args()
    result: dict[str, Any] = {"benchmark": "broker", "backend": "sim"}
    if args.only in (None, "overhead"):
        result["overhead"] = overhead(args.rounds)
        print(json.dumps(result["overhead"]), flush=True)
    if args.only in (None, "idle"):
        result["idle"] = idle(args.idle_seconds)
        print(json.dumps(result["idle"]), flush=True)
    if args.only in (None, "load"):
        result["load"] = load(args.jobs)
        print(json.dumps(result["load"]), flush=True)
    if args.only in (None, "submit"):
        result["submit_during_release"] = submit_during_release(args.submits)
        print(json.dumps(result["submit_during_release"]), flush=True)
    if args.only in (None, "inflight"):
        result["submit_in_flight"] = submit_in_flight([1, 200, 500])
        print(json.dumps(result["submit_in_flight"]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    name = "broker.json" if args.only is None else f"broker-{args.only}.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
