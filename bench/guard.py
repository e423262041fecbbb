"""How fast the headroom guard makes room, and what watching for pressure costs when idle.

Setup (seed 001's card): a simulated 12 GiB GPU, a real `gpuherd sim app ollama` holding a
4 GiB model, a Plex process holding 1 GiB; the broker (engine + daemon loop, in this process)
guards 2 GiB with `for: 1s`. Each trial allocates 6 GiB more for Plex at once (1 GiB free: the
pressure starts), and times until 2 GiB are free again (the guard unloaded Ollama's model
through Ollama's API). Then Plex frees it and the guard restores the model before the next trial.

    total    = pressure start -> room free
    overhead = total - `for` - Ollama's own unload time (the same API call timed alone)

The overhead is what the broker adds: noticing the pressure (up to one poll: `noticed`), then
its decision, the journal writes and the verification on the GPU (`reaction`, from the end of
`for` after the first reading that saw the pressure). Target: p50 < 300 ms at a 1 s poll. Idle
CPU: the broker process's CPU time per wall second with nothing to do, with the guard on and
off. Side by side: a 1 s poll with the pressure sampler (`broker.guard_sample`: free memory
only, waking the engine on a crossing) at its default 250 ms and at 100 ms, the same poll
without it, and a 0.25 s poll without it.

    .venv/bin/python bench/guard.py [--trials 15] [--idle-seconds 20]

Writes bench/results/guard.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from gpuherd.broker.daemon import Daemon
from gpuherd.broker.engine import Engine
from gpuherd.broker.journal import Journal
from gpuherd.gpu.sim import SimBackend, SimHost
from gpuherd.spec.load import parse_config

RESULTS = Path(__file__).parent / "results"
GIB = 1024**3
FOR = 1.0


def _config(url: str, poll: float, guard: bool) -> str:
    spec = f", guard: {{min_free: 2GiB, for: {FOR}s, restore_above: 0.5GiB, restore_after: 0.2s}}"
    return f"""\
version: 1
gpus: [{{name: gpu0, index: 0{spec if guard else ""}}}]
broker: {{poll_interval: {poll}s}}
tenants:
  plex:
    {{gpu: gpu0, vram: 1GiB, priority: 100, preemptible: false, match: {{cmdline: "plex-bench"}}}}
  ollama:
    gpu: gpu0
    vram: 4GiB
    priority: 10
    cooldown: 0s
    match: {{cmdline: "sim app ollama"}}
    preempt: [{{ollama: {{url: "{url}"}}}}]
"""


def _free(host: SimHost) -> int:
    return host.snapshot().devices[0].memory_free


def _held(host: SimHost, name: str) -> int:
    return sum(p.used_bytes or 0 for p in host.snapshot().processes if p.name == name)


def _wait(check: Any, timeout: float = 30.0, step: float = 0.002) -> float:
    start = time.perf_counter()
    while not check():
        if time.perf_counter() - start > timeout:
            raise TimeoutError("the guard did not act in time")
        time.sleep(step)
    return time.perf_counter()


def _unload_time(url: str, host: SimHost, trials: int) -> float:
    """Ollama's own unload, timed alone: the API call until the memory is gone."""
    times = []
    for _ in range(trials):
        start = time.perf_counter()
        httpx.post(f"{url}/api/generate", json={"model": "llama3", "keep_alive": 0}, timeout=10)
        end = _wait(lambda: _held(host, "ollama") == 0)
        times.append(end - start)
        httpx.post(f"{url}/api/generate", json={"model": "llama3"}, timeout=10)
        _wait(lambda: _held(host, "ollama") == 4 * GIB)
    return statistics.median(times)


def _broker(
    sim: Path, state: Path, url: str, poll: float, guard: bool, *, sample: float = 0.0
) -> Daemon:
    engine = Engine(
        config=parse_config(_config(url, poll, guard), source="bench.yaml"),
        backend=SimBackend(sim),
        journal=Journal(state / "journal.db"),
        state_dir=state,
        poll=poll,
    )
    daemon = Daemon(engine, poll_interval=poll, sample_interval=sample)
    daemon.start()
    return daemon


def _pressure_trials(
    sim: Path, state: Path, url: str, *, plex_pid: int, poll: float, sample: float, trials: int
) -> list[tuple[float, float]]:
    """(total, noticed) per trial: pressure start -> room free, and -> the guard's first
    reading of it (its release is journaled `for` after that reading)."""
    daemon = _broker(sim, state, url, poll, guard=True, sample=sample)
    host = SimHost(sim)
    journal = daemon.engine.journal
    phase = random.Random(14)
    out = []
    try:
        for _ in range(trials):
            _wait(lambda: _held(host, "ollama") == 4 * GIB)
            time.sleep(phase.uniform(0, poll))  # the pressure starts anywhere in a poll
            host.allocate(pid=plex_pid, gpu=0, nbytes=6 * GIB, name="plex")
            start, wall = time.perf_counter(), time.time()
            end = _wait(lambda: _free(host) >= 2 * GIB)
            released = [e.at for e in journal.events() if e.kind == "guard_release"][-1]
            out.append((end - start, released - FOR - wall))
            host.free(pid=plex_pid, gpu=0, nbytes=6 * GIB)
        _wait(lambda: _held(host, "ollama") == 4 * GIB)  # restored before the broker stops
    finally:
        daemon.stop()
        daemon.engine.journal.close()
        host.close()
    return out


def _idle_cpu(
    sim: Path, state: Path, url: str, *, poll: float, sample: float, guard: bool, seconds: float
) -> float:
    daemon = _broker(sim, state, url, poll, guard, sample=sample)
    try:
        time.sleep(poll * 2)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        time.sleep(seconds)
        return (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    finally:
        daemon.stop()
        daemon.engine.journal.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=15)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sim = root / "sim"
        SimHost.init(sim, [("NVIDIA GeForce RTX 3080 Ti", 12 * GIB)]).close()
        gpuherd = [sys.executable, "-m", "gpuherd"]
        app = subprocess.Popen(
            [*gpuherd, "sim", "app", "ollama", "llama3=4GiB", "--sim-dir", str(sim)],
            stdout=subprocess.PIPE,
            text=True,
        )
        plex = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(1e6)", "plex-bench"]
        )
        try:
            assert app.stdout is not None
            url = f"http://127.0.0.1:{app.stdout.readline().split()[1]}"
            host = SimHost(sim)
            host.allocate(pid=plex.pid, gpu=0, nbytes=GIB, name="plex")
            unload = _unload_time(url, host, 10)
            result: dict[str, Any] = {
                "python": platform.python_version(),
                "machine": platform.machine(),
                "cpus": len(__import__("os").sched_getaffinity(0)),
                "for_s": FOR,
                "ollama_unload_median_ms": round(unload * 1000, 1),
                "polls": {},
            }
            # The default (a 1 s poll with the 250 ms pressure sampler), a faster sampler, and
            # the two ways without it: the same poll, and a poll four times as often.
            for i, (poll, sample) in enumerate(((1.0, 0.25), (1.0, 0.1), (1.0, 0.0), (0.25, 0.0))):
                runs = _pressure_trials(
                    sim,
                    root / f"state-p{i}",
                    url,
                    plex_pid=plex.pid,
                    poll=poll,
                    sample=sample,
                    trials=args.trials,
                )
                overheads = sorted(t - FOR - unload for t, _ in runs)
                # What the broker adds once it has seen the pressure and `for` ran out.
                reaction = sorted(t - FOR - unload - noticed for t, noticed in runs)
                idle = {
                    on: _idle_cpu(
                        sim,
                        root / f"idle-{on}{i}",
                        url,
                        poll=poll,
                        sample=sample,
                        guard=on,
                        seconds=args.idle_seconds,
                    )
                    for on in (True, False)
                }
                name = f"poll {poll:g}s, sampler " + (f"{sample * 1000:g} ms" if sample else "off")
                result["polls"][name] = {
                    "trials": len(runs),
                    "total_p50_ms": round(statistics.median(t for t, _ in runs) * 1000, 1),
                    "overhead_p50_ms": round(statistics.median(overheads) * 1000, 1),
                    "overhead_p90_ms": round(overheads[int(len(overheads) * 0.9)] * 1000, 1),
                    "overhead_max_ms": round(overheads[-1] * 1000, 1),
                    "noticed_p50_ms": round(statistics.median(n for _, n in runs) * 1000, 1),
                    "reaction_p50_ms": round(statistics.median(reaction) * 1000, 1),
                    "reaction_max_ms": round(reaction[-1] * 1000, 1),
                    "idle_cpu_guard_on_pct": round(idle[True] * 100, 2),
                    "idle_cpu_guard_off_pct": round(idle[False] * 100, 2),
                }
                print(f"{name}: {json.dumps(result['polls'][name])}", flush=True)
            host.close()
        finally:
            for proc in (app, plex):
                proc.terminate()
                proc.wait(timeout=10)
            if app.stdout is not None:
                app.stdout.close()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "guard.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
