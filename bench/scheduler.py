"""Scheduler decision latency: 1,000 queued jobs, 200 tenants, 16 GPUs (target: median < 10 ms).

Peer in the same run: the same decisions with a naive victim search that tries every subset of
the eligible tenants (what a first implementation does), on the same instances.

    .venv/bin/python bench/scheduler.py [--rounds 50]

Writes bench/results/scheduler.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from itertools import combinations
from pathlib import Path
from typing import Any

from gpuherd.broker import scheduler
from gpuherd.broker.scheduler import GpuState, JobRequest, TenantState, schedule
from gpuherd.ids import GpuName, JobId, TenantName

GIB = 1024**3
RESULTS = Path(__file__).parent / "results"


def instance(seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    gpus = [GpuState(name=GpuName(f"gpu{i}"), free=rng.randint(0, 8) * GIB) for i in range(16)]
    tenants = [
        TenantState(
            name=TenantName(f"t{i}"),
            gpu=GpuName(f"gpu{i % 16}"),
            priority=rng.randint(0, 100),
            preemptible=rng.random() < 0.8,
            held=rng.randint(1, 12) * GIB,
            max_downtime=rng.choice([None, 600.0, 7200.0]),
            restore_cost=rng.choice([1.0, 5.0, 30.0]),
        )
        for i in range(200)
    ]
    queue = [
        JobRequest(
            id=JobId(f"j{i}"),
            gpu=GpuName(f"gpu{rng.randrange(16)}"),
            vram=rng.randint(1, 20) * GIB,
            priority=rng.randint(0, 100),
            timeout=rng.choice([600.0, 1800.0, 3600.0]),
            submitted_at=float(i),
        )
        for i in range(1000)
    ]
    return {"gpus": gpus, "tenants": tenants, "queue": queue}


def naive_victims(candidates: list[TenantState], deficit: int) -> tuple[TenantState, ...] | None:
    sets = [
        s
        for k in range(1, len(candidates) + 1)
        for s in combinations(candidates, k)
        if sum(v.held for v in s) >= deficit
    ]
    return min(sets, key=scheduler._key) if sets else None


def timings(rounds: int, naive: bool) -> list[float]:
    original = scheduler.choose_victims
    if naive:
        scheduler.choose_victims = naive_victims
    try:
        samples = []
        for r in range(rounds):
            data = instance(r)
            start = time.perf_counter()
            schedule(now=0.0, **data)
            samples.append((time.perf_counter() - start) * 1000)
        return samples
    finally:
        scheduler.choose_victims = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    ours = timings(args.rounds, naive=False)
    peer = timings(max(args.rounds // 5, 5), naive=True)
    result = {
        "benchmark": "scheduler_decision_latency",
        "jobs": 1000,
        "tenants": 200,
        "gpus": 16,
        "gpuherd_median_ms": round(statistics.median(ours), 3),
        "gpuherd_p95_ms": round(sorted(ours)[int(len(ours) * 0.95) - 1], 3),
        "peer_naive_subsets_median_ms": round(statistics.median(peer), 3),
        "target_median_ms": 10.0,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scheduler.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
