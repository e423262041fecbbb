"""Randomized kill -9 trials of a real `gpuherd serve` on the simulated GPU, shared by the test
suite (a few seeds) and bench/broker_chaos.py (many).

Each trial queues jobs that need a tenant's memory, kills the broker at random moments while
they run, restarts it each time, and then checks: every job ended and succeeded, no job's
command ran twice, the tenant is back exactly once with its memory, nothing is left released.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from gpuherd.broker.journal import Journal
from gpuherd.broker.submission import Submission
from gpuherd.gpu.sim import SimHost
from gpuherd.ids import JobName

GIB = 1024**3
GPUHERD = [sys.executable, "-m", "gpuherd"]

JOB = """\
import os, sys
with open(sys.argv[1], "a") as f:
    f.write(os.environ["GPUHERD_JOB_ID"] + "\\n")
os.execv(sys.argv[2], sys.argv[2:])
"""


@dataclass
class Outcome:
    kills: int
    jobs: int
    succeeded: int
    ran_twice: int
    tenant_copies: int
    tenant_bytes: int
    open_releases: int

    @property
    def ok(self) -> bool:
        return (
            self.succeeded == self.jobs
            and self.ran_twice == 0
            and self.tenant_copies == 1
            and self.tenant_bytes == 3 * GIB
            and self.open_releases == 0
        )


def trial(root: Path, seed: int, *, jobs: int = 3, kills: int = 3) -> Outcome:
    rng = random.Random(seed)
    sim = root / "sim"
    SimHost.init(sim, [("NVIDIA GeForce RTX 3080 Ti", 12 * GIB)]).close()
    hold = [*GPUHERD, "sim", "hold", "--sim-dir", str(sim)]
    tenant = [*hold, "--vram", "3GiB", "--name", "whisper"]
    (root / "job.py").write_text(JOB)
    marks = root / "ran"
    command = [sys.executable, str(root / "job.py"), str(marks), *hold]
    command += ["--vram", "10GiB", "--for", "0.5s", "--name", "render"]
    (root / "gpuherd.yaml").write_text(
        f"""\
version: 1
gpus: [{{name: gpu0, index: 0}}]
broker: {{poll_interval: 0.1s, restore_retry: 0.2s, restore_retry_max: 1s}}
tenants:
  whisper:
    gpu: gpu0
    vram: 3GiB
    priority: 20
    cooldown: 0s
    match: {{cmdline: "--name whisper"}}
    preempt: [{{signal: {{grace: 5s, start: {tenant!r}}}}}]
jobs:
  render: {{gpu: gpu0, vram: 10GiB, priority: 50, timeout: 120s, command: {command!r}}}
"""
    )
    first = subprocess.Popen(tenant, stdout=subprocess.DEVNULL, start_new_session=True)
    state = root / "state"
    state.mkdir(mode=0o700)
    journal = Journal(state / "journal.db")
    ids = [journal.submit(Submission(job=JobName("render"))) for _ in range(jobs)]
    journal.close()
    argv = [*GPUHERD, "serve", "-c", str(root / "gpuherd.yaml"), "--backend", "sim"]
    argv += ["--sim-dir", str(sim), "--state", str(state), "--socket", str(root / "s.sock")]
    try:
        for _ in range(kills):
            broker = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.5, 4.0))
            broker.kill()
            broker.wait(timeout=30)
        broker = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        journal = Journal(state / "journal.db")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            rows = [journal.job(i) for i in ids]
            if all(r is not None and r.state.final for r in rows) and not (
                journal.pending_restores()
            ):
                break
            time.sleep(0.2)
        time.sleep(0.5)  # a second copy of the tenant, if one were started, would show now
        rows = [journal.job(i) for i in ids]
        ran = marks.read_text().split() if marks.exists() else []
        with SimHost(sim) as host:
            copies = [p for p in host.snapshot().processes if p.name == "whisper"]
        outcome = Outcome(
            kills=kills,
            jobs=jobs,
            succeeded=sum(1 for r in rows if r is not None and r.state == "succeeded"),
            ran_twice=sum(1 for i in ids if ran.count(i) > 1),
            tenant_copies=len(copies),
            tenant_bytes=sum(p.used_bytes or 0 for p in copies),
            open_releases=len(journal.pending_restores()),
        )
        journal.close()
        broker.send_signal(signal.SIGTERM)
        broker.wait(timeout=30)
        return outcome
    finally:
        first.kill()
        first.wait(timeout=10)
        with SimHost(sim) as host:  # the copies of the tenant that restores started
            for proc in host.snapshot().processes:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
