"""`gpuherd demo --kubernetes` as a user runs it: the real CLI in a subprocess, its temporary
directory under the test's (TMPDIR), and nothing of it left running or on disk afterwards."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.leaks import end, strays

DEMO = [sys.executable, "-m", "gpuherd", "demo", "--kubernetes"]
RUN_TIMEOUT = 180  # seconds; the demo takes about 15 on a 2-core machine


def _env(tmp_path: Path) -> dict[str, str]:
    """The demo's temp dir goes under tmp_path; no cluster or node of the caller leaks in."""
    drop = ("KUBECONFIG", "NODE_NAME", "GPUHERD_SIM_DIR", "GPUHERD_BACKEND")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, "TMPDIR": str(tmp_path), "COLUMNS": "200"}


def _nothing_left(tmp_path: Path) -> None:
    left = strays(tmp_path)
    end(list(left))
    assert not left, f"processes the demo left running: {left}"
    assert list(tmp_path.iterdir()) == [], "the demo left files behind"


def test_the_story_is_told_step_by_step_and_nothing_is_left_behind(tmp_path: Path) -> None:
    result = subprocess.run(
        DEMO, capture_output=True, text=True, timeout=RUN_TIMEOUT, env=_env(tmp_path), check=False
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "Traceback" not in result.stderr
    expected = [  # in the order they must come
        "kubectl -n ollama apply -f ollama.yaml",
        "gpuherd serve --kubernetes --node k3s-gpu-01",
        "gpuherd serve --kubernetes --node k3s-gpu-02",
        "GPU 0 on k3s-gpu-01 (NVIDIA RTX 4000 Ada Generation): 13.0 GiB used, 7.0 GiB free",
        "broker on k3s-gpu-01: tenants from the annotations: frigate (running), ollama (running)",
        "broker on k3s-gpu-02: tenants from the annotations: whisper (running)",
        "kubectl -n mapshot create job nightly-render-manual --from=cronjob/nightly-render",
        "the broker on k3s-gpu-01 took the Job",
        "held by k3s-gpu-01: tenants on its GPU are released",
        "deployment/ollama replicas 1 -> 0",
        "job/nightly-render-manual unsuspended, pinned to k3s-gpu-01",
        "job/nightly-render-manual Complete: 1/1 succeeded",
        "deployment/ollama replicas 0 -> 1",
        "deployment/ollama: gpuherd's annotations removed",
        "job/nightly-render-manual annotated gpuherd.io/outcome=succeeded",
        "k3s-gpu-02: no jobs",
    ]
    at = [out.find(line) for line in expected]
    assert all(i >= 0 for i in at), [line for line, i in zip(expected, at, strict=True) if i < 0]
    assert at == sorted(at), out
    # The GPU's lease goes once Ollama is back (beside the Job's outcome, in either order).
    assert out.find("let go: the GPU's tenants are back") > out.find("annotations removed"), out
    assert "gpuherd.io/restore-replicas=1" in out
    assert re.search(r"gpuherd\.io/released-by=k3s-gpu-01/[0-9a-f]+", out)
    assert re.search(r"ollama released: its memory is free on the GPU, [\d.]+s after", out)
    assert re.search(r"^  \+ ?\d+\.\d\ds  ", out, re.MULTILINE)  # timed steps
    last = out.strip().splitlines()[-1]
    assert re.match(
        r"nightly render ran [\d.]+s on k3s-gpu-01; ollama replicas 1 -> 0 -> 1, down [\d.]+s "
        r"\(released in [\d.]+s, restored in [\d.]+s\); frigate and k3s-gpu-02's whisper "
        r"untouched; story [\d.]+s, demo [\d.]+s$",
        last,
    ), last
    _nothing_left(tmp_path)


def test_json_reports_the_story_for_scripts(tmp_path: Path) -> None:
    result = subprocess.run(
        [*DEMO, "--json"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env=_env(tmp_path),
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)  # nothing but the object on stdout
    assert report["ok"] is True
    assert report["ollama"]["replicas"] == [1, 0, 1]
    notes = report["ollama"]["annotations_written"]
    assert notes["gpuherd.io/restore-replicas"] == "1"
    assert notes["gpuherd.io/released-by"] == f"k3s-gpu-01/{report['job']['gpuherd_job']}"
    job = report["job"]
    assert (job["state"], job["taken_by"], job["pinned_to"]) == (
        "Complete",
        "k3s-gpu-01",
        "k3s-gpu-01",
    )
    assert job["annotations_written"]["gpuherd.io/outcome"] == "succeeded"
    assert report["untouched"] == {"nvr/frigate": [1, 1], "speech/whisper": [1, 1]}
    timings = report["timings"]
    assert (
        0
        <= timings["admitted"]
        <= timings["ollama_scaled_to_0"]
        <= timings["job_unsuspended"]
        <= timings["job_ended"]
        <= timings["ollama_scaled_to_1"]
        <= timings["ollama_ready_again"]
    ), timings
    assert timings["render_ran"] >= 2.5  # the render holds its memory for 3 s
    assert [s for s in report["steps"] if s.get("event") == "released"]
    _nothing_left(tmp_path)


def _lines(proc: subprocess.Popen[str]) -> queue.Queue[str | None]:
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


@pytest.mark.parametrize(
    ("sig", "after"),
    [
        (signal.SIGINT, "deployment/ollama replicas 1 -> 0"),  # Ollama released, render next
        (signal.SIGTERM, "API server http://127.0.0.1:"),  # the brokers still starting
    ],
)
def test_an_interrupt_ends_everything_it_started(
    tmp_path: Path, sig: signal.Signals, after: str
) -> None:
    proc = subprocess.Popen(
        DEMO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(tmp_path),
    )
    try:
        lines = _lines(proc)
        seen: list[str] = []
        while True:
            line = lines.get(timeout=RUN_TIMEOUT)
            assert line is not None, "".join(seen)
            seen.append(line)
            if after in line:
                break
        proc.send_signal(sig)  # what a Ctrl-C in the terminal (or a service manager) sends
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 130, err
    assert "interrupted: ending the brokers, the cluster and its pods" in err
    assert "Traceback" not in err
    _nothing_left(tmp_path)


def test_without_the_simcluster_extra_the_message_names_it() -> None:
    code = (
        "import runpy, sys; sys.modules['kubernetes'] = None; "
        "sys.argv = ['gpuherd', *sys.argv[1:]]; runpy.run_module('gpuherd', run_name='__main__')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "demo", "--kubernetes"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "pip install 'gpuherd[simcluster]'" in result.stderr
    assert "needs kubernetes (not installed)" in result.stderr
    assert "Traceback" not in result.stderr


def test_json_without_kubernetes_is_a_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gpuherd", "demo", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--json goes with --kubernetes" in result.stderr
