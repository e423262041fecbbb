"""`gpuherd lint` against checkov and the YAML parsing floor, on one generated corpus.

Corpus: 5,000 Kubernetes documents (Deployments, StatefulSets, CronJobs, Pods, Services,
ConfigMaps; about a fifth use GPUs), 10 per file, about 2.3 MB. Each tool runs as a whole
process; wall time and peak RSS come from GNU time. The parsing floor is a process that only
runs PyYAML's `compose_all` with the LibYAML CSafeLoader over the same files.

    .venv/bin/python bench/lint_vs_checkov.py [--docs 5000] [--runs 3] [--checkov-runs 1]
                                              [--no-checkov]

checkov lives in its own virtualenv (.bench-venv, `pip install checkov`), never in gpuherd's
dependencies. Targets: gpuherd <= 3x the floor, >= 50x faster than checkov, < 150 MB peak.
Writes bench/results/lint_vs_checkov.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CHECKOV = ROOT / ".bench-venv" / "bin" / "checkov"
GNU_TIME = "/usr/bin/time"

FLOOR = """
import sys, yaml
from pathlib import Path
n = 0
for p in sorted(Path(sys.argv[1]).glob("*.yaml")):
    for _doc in yaml.compose_all(p.read_text(), Loader=yaml.CSafeLoader):
        n += 1
print(n)
"""


def _container(rng: random.Random, gpu: bool, i: int) -> dict[str, Any]:
    limits: dict[str, Any] = {"memory": "4Gi"}
    env: list[dict[str, str]] = [
        {"name": f"VAR_{k}", "value": f"v{k}"} for k in range(rng.randint(0, 2))
    ]
    if gpu:
        limits["nvidia.com/gpu"] = rng.choice([1, 1, 1, 2, "1"])
        if rng.random() < 0.3:
            env.append({"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "compute,utility"})
    image = rng.choice(
        [
            "nginx:1.27",
            "redis:7",
            "ollama/ollama:0.4",
            "vllm/vllm-openai:v0.6",
            "jellyfin/jellyfin:10.9",
            "busybox:1.36",
        ]
    )
    return {"name": f"app-{i}", "image": image, "env": env, "resources": {"limits": limits}}


def _document(rng: random.Random, i: int) -> dict[str, Any]:
    gpu = rng.random() < 0.2
    kind = rng.choice(
        ["Deployment", "Deployment", "StatefulSet", "CronJob", "Pod", "Service", "ConfigMap"]
    )
    meta = {"name": f"obj-{i}", "namespace": f"ns-{i % 17}", "labels": {"app": f"app-{i}"}}
    if kind == "Service":
        return {
            "apiVersion": "v1",
            "kind": kind,
            "metadata": meta,
            "spec": {"selector": {"app": f"app-{i}"}, "ports": [{"port": 80 + i % 50}]},
        }
    if kind == "ConfigMap":
        return {
            "apiVersion": "v1",
            "kind": kind,
            "metadata": meta,
            "data": {f"key{k}": f"value {k}" for k in range(3)},
        }
    pod: dict[str, Any] = {
        "containers": [_container(rng, gpu, i) for _ in range(rng.randint(1, 2))]
    }
    if gpu and rng.random() < 0.7:
        pod["runtimeClassName"] = "nvidia"
    template = {"metadata": {"labels": {"app": f"app-{i}"}}, "spec": pod}
    if kind == "Pod":
        return {"apiVersion": "v1", "kind": kind, "metadata": meta, "spec": pod}
    if kind == "CronJob":
        return {
            "apiVersion": "batch/v1",
            "kind": kind,
            "metadata": meta,
            "spec": {"schedule": "0 4 * * *", "jobTemplate": {"spec": {"template": template}}},
        }
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": meta,
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": f"app-{i}"}},
            "template": template,
        },
    }


def make_corpus(directory: Path, docs: int, per_file: int = 10) -> int:
    import yaml

    rng = random.Random(42)
    directory.mkdir(parents=True, exist_ok=True)
    size = 0
    for f in range(0, docs, per_file):
        batch = [_document(rng, i) for i in range(f, min(f + per_file, docs))]
        text = yaml.safe_dump_all(batch, sort_keys=False)
        (directory / f"manifests-{f // per_file:04d}.yaml").write_text(text)
        size += len(text.encode())
    return size


def timed(argv: list[str]) -> dict[str, float]:
    """Wall seconds and peak RSS (MB) of one whole process, via GNU time."""
    out = subprocess.run(
        [GNU_TIME, "-f", "%e %M", *argv], capture_output=True, text=True, check=False
    )
    wall, rss_kb = out.stderr.strip().splitlines()[-1].split()
    return {
        "wall_s": float(wall),
        "peak_mb": round(int(rss_kb) / 1024, 1),
        "exit": out.returncode,
        "stdout_bytes": len(out.stdout),
    }


def measure(argv: list[str], runs: int) -> dict[str, Any]:
    samples = [timed(argv) for _ in range(runs)]
    return {
        "median_wall_s": round(statistics.median(s["wall_s"] for s in samples), 3),
        "peak_mb": max(s["peak_mb"] for s in samples),
        "runs": runs,
        "exit_codes": sorted({int(s["exit"]) for s in samples}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-checkov", action="store_true")
    parser.add_argument("--checkov-runs", type=int, default=1, help="checkov takes ~45 s a run")
    args = parser.parse_args()
    if not Path(GNU_TIME).exists():
        sys.exit("GNU time is needed (apt-get install time)")
    work = Path(tempfile.mkdtemp(prefix="gpuherd-lint-bench-"))
    try:
        corpus = work / "corpus"
        size = make_corpus(corpus, args.docs)
        python = sys.executable
        gpuherd = [python, "-m", "gpuherd", "lint", str(corpus), "--format", "json"]
        result: dict[str, Any] = {
            "benchmark": "lint_vs_checkov",
            "documents": args.docs,
            "corpus_bytes": size,
            "gpuherd_lint": measure(gpuherd, args.runs),
            "parsing_floor": measure([python, "-c", FLOOR, str(corpus)], args.runs),
        }
        found = json.loads(
            subprocess.run(gpuherd, capture_output=True, text=True, check=False).stdout
        )
        result["gpuherd_findings"] = len(found["findings"])
        if not args.no_checkov:
            if not CHECKOV.exists():
                sys.exit(
                    f"{CHECKOV} missing: python3 -m venv .bench-venv && "
                    ".bench-venv/bin/pip install checkov (or pass --no-checkov)"
                )
            result["checkov"] = measure(
                [
                    str(CHECKOV),
                    "-d",
                    str(corpus),
                    "--framework",
                    "kubernetes",
                    "--quiet",
                    "--compact",
                    "-o",
                    "json",
                ],
                args.checkov_runs,
            )
        ours = result["gpuherd_lint"]["median_wall_s"]
        result["ratio_to_floor"] = round(ours / result["parsing_floor"]["median_wall_s"], 2)
        if "checkov" in result:
            result["speedup_vs_checkov"] = round(result["checkov"]["median_wall_s"] / ours, 1)
        result["targets"] = {
            "ratio_to_floor_max": 3.0,
            "speedup_vs_checkov_min": 50.0,
            "peak_mb_max": 150.0,
        }
        result["machine"] = {"python": platform.python_version(), "platform": platform.platform()}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "lint_vs_checkov.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
