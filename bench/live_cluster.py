"""`gpuherd lint --cluster` and `gpuherd plan --from-cluster` on a cluster of N workloads.

A simulated cluster (one node, one simulated 24 GiB GPU) holds N Deployments (replicas 0, every
fourth one with a GPU mistake, every second one a GPU tenant with `gpuherd.io/vram`) and N/10
CronJobs. Timed, as whole processes (median wall time and peak RSS from GNU time):

- `gpuherd lint --cluster --format json` (list every kind, strip, render, lint, map back);
- `gpuherd lint FILE --format json` on the same objects as the server returns them, in one
  file: the cost of the rules alone, for comparison;
- `gpuherd plan --from-cluster --format json`.

    .venv/bin/python bench/live_cluster.py [--workloads 1000] [--runs 5]

Writes bench/results/live_cluster.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from kubernetes import client, config  # noqa: E402

from gpuherd.gpu.sim import SimHost  # noqa: E402
from gpuherd.simcluster import NodeSpec, SimCluster  # noqa: E402

RESULTS = ROOT / "bench" / "results"
GIB = 1024**3


def deployment(i: int) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": f"example/app{i}:1"}
    annotations = {}
    if i % 2 == 0:
        container["resources"] = {"limits": {"nvidia.com/gpu": "1"}}
        annotations["gpuherd.io/vram"] = f"{1 + i % 4}GiB"
    if i % 4 == 0:
        container["resources"]["requests"] = {"nvidia.com/gpu": "2"}  # gpu-limits
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"app{i}", "annotations": annotations},
        "spec": {
            "replicas": 0,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app": f"app{i}"}},
            "template": {
                "metadata": {"labels": {"app": f"app{i}"}},
                "spec": {"containers": [container]},
            },
        },
    }


def cronjob(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": f"nightly{i}"},
        "spec": {
            "schedule": "0 3 * * *",
            "suspend": True,
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [
                                {
                                    "name": "main",
                                    "image": "example/batch:1",
                                    "resources": {"limits": {"nvidia.com/gpu": "1"}},
                                }
                            ],
                        }
                    }
                }
            },
        },
    }


def timed(argv: list[str]) -> tuple[float, float, int]:
    out = subprocess.run(
        ["/usr/bin/time", "-f", "%e %M", *argv], capture_output=True, text=True, check=False
    )
    wall, rss = out.stderr.strip().splitlines()[-1].split()
    return float(wall), int(rss) / 1024, out.returncode


def measure(name: str, argv: list[str], runs: int) -> dict[str, Any]:
    samples = [timed(argv) for _ in range(runs)]
    codes = {code for _w, _r, code in samples}
    row = {
        "process": name,
        "median_wall_s": round(statistics.median(w for w, _r, _c in samples), 2),
        "median_peak_rss_mb": round(statistics.median(r for _w, r, _c in samples), 1),
        "exit_codes": sorted(codes),
    }
    print(
        f"{name:<44} {row['median_wall_s']:>6.2f} s  {row['median_peak_rss_mb']:>7.1f} MB  "
        f"exit {row['exit_codes']}"
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workloads", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        SimHost.init(work / "sim", [("NVIDIA RTX 6000 Ada Generation", 24 * GIB)]).close()
        with SimCluster(
            directory=work / "cluster", nodes=[NodeSpec("gpu-01", (0,))], sim_dir=work / "sim"
        ) as cluster:
            api: Any = config.new_client_from_config(str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
            apps: Any = client.AppsV1Api(api)
            batch: Any = client.BatchV1Api(api)
            for i in range(args.workloads):
                apps.create_namespaced_deployment("default", deployment(i))
            for i in range(args.workloads // 10):
                batch.create_namespaced_cron_job("default", cronjob(i))
            dump = work / "objects.json"
            items = []
            lists: list[Any] = [
                apps.list_namespaced_deployment("default", _preload_content=False),
                batch.list_namespaced_cron_job("default", _preload_content=False),
                client.CoreV1Api(api).list_node(_preload_content=False),
            ]
            for listed in lists:
                items += json.loads(listed.data)["items"]
            dump.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
            api.close()
            gpuherd = [sys.executable, "-m", "gpuherd"]
            kube = ["--kubeconfig", str(cluster.kubeconfig)]
            rows = [
                measure(
                    "lint --cluster --format json",
                    [*gpuherd, "lint", "--cluster", *kube, "-f", "json"],
                    args.runs,
                ),
                measure(
                    "lint FILE --format json (same objects)",
                    [*gpuherd, "lint", str(dump), "-f", "json"],
                    args.runs,
                ),
                measure(
                    "plan --from-cluster --format json",
                    [*gpuherd, "plan", "--from-cluster", *kube, "-f", "json"],
                    args.runs,
                ),
            ]
    result = {
        "workloads": args.workloads,
        "cronjobs": args.workloads // 10,
        "runs": args.runs,
        "machine": {"python": platform.python_version(), "system": platform.platform()},
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "live_cluster.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
