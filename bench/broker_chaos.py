"""Randomized kill -9 trials of a real broker on the simulated GPU, many seeds.

Each trial queues 3 jobs that need a tenant's memory, kills `gpuherd serve` with SIGKILL at
3 random moments, restarts it, and checks that every job succeeded, none ran twice, the tenant
is back exactly once and nothing is left released (tests/broker/chaos.py).

    .venv/bin/python bench/broker_chaos.py [--trials 30] [--first-seed 100]

Writes bench/results/broker_chaos.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository's tests/

from tests.broker.chaos import trial

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--first-seed", type=int, default=100)
    args = parser.parse_args()
    outcomes = []
    started = time.monotonic()
    for seed in range(args.first_seed, args.first_seed + args.trials):
        with tempfile.TemporaryDirectory() as tmp:
            outcome = trial(Path(tmp), seed)
        outcomes.append({"seed": seed, "ok": outcome.ok, **asdict(outcome)})
        print(json.dumps(outcomes[-1]), flush=True)
    result = {
        "benchmark": "broker_chaos",
        "trials": len(outcomes),
        "survived": sum(1 for o in outcomes if o["ok"]),
        "kills": sum(o["kills"] for o in outcomes),
        "jobs": sum(o["jobs"] for o in outcomes),
        "jobs_succeeded": sum(o["succeeded"] for o in outcomes),
        "jobs_run_twice": sum(o["ran_twice"] for o in outcomes),
        "seconds": round(time.monotonic() - started, 1),
        "outcomes": outcomes,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "broker_chaos.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "outcomes"}, indent=2))


if __name__ == "__main__":
    main()
