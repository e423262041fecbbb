"""Jobs as local processes: each in its own process group, found again by pid + start time."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from gpuherd.broker.launcher import Exited, LaunchError
from gpuherd.broker.records import Handle
from gpuherd.gpu.procinfo import start_ticks
from gpuherd.ids import JobId
from gpuherd.procctl import terminate_group
from gpuherd.spec.model import GpuSpec, JobSpec


class LocalLauncher:
    name = "local"

    def __init__(self, *, on_exit: Callable[[], None] | None = None) -> None:
        self._on_exit = on_exit  # wakes the engine: restore the tenants now, not at next poll
        self._procs: dict[int, subprocess.Popen[bytes]] = {}  # our children, by pid

    def launch(
        self, job_id: JobId, job: JobSpec, *, gpu: GpuSpec, workdir: Path, log_dir: Path
    ) -> Handle:
        log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        device = gpu.uuid or str(gpu.index or 0)
        env = {
            **os.environ,
            **job.env,
            "CUDA_VISIBLE_DEVICES": device,
            "NVIDIA_VISIBLE_DEVICES": device,
            "GPUHERD_JOB_ID": job_id,
        }
        out, err = log_dir / f"{job_id}.out", log_dir / f"{job_id}.err"
        try:
            with out.open("wb") as stdout, err.open("wb") as stderr:
                proc = subprocess.Popen(
                    job.command,
                    cwd=workdir,
                    env=env,
                    stdout=stdout,
                    stderr=stderr,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte in argv or env
            raise LaunchError(str(exc)) from None
        self._procs[proc.pid] = proc
        if self._on_exit is not None:
            on_exit = self._on_exit
            threading.Thread(
                target=lambda: (proc.wait(), on_exit()), name=f"wait-{job_id}", daemon=True
            ).start()
        return Handle.of(self.name, pid=proc.pid, ticks=start_ticks(proc.pid))

    def poll(self, handle: Handle) -> Exited | None:
        pid = int(handle.get("pid"))
        proc = self._procs.get(pid)
        if proc is not None:
            code = proc.poll()  # asked again, it answers the same
            return None if code is None else Exited(code)
        if start_ticks(pid) == handle.get("ticks"):
            return None
        return Exited(None)  # adopted: not our child, its status is not ours to read

    def stop(self, handle: Handle, *, grace: float) -> Exited:
        pid = int(handle.get("pid"))
        proc = self._procs.pop(pid, None)
        if proc is None and start_ticks(pid) != handle.get("ticks"):
            return Exited(None)  # gone already; never signal a recycled pid's group
        reap = proc.poll if proc is not None else lambda: None
        terminate_group(pid, grace=grace, reap=reap)
        return Exited(None if proc is None else proc.wait())

    def adopt(self, handle: Handle) -> bool:
        return bool(start_ticks(int(handle.get("pid"))) == handle.get("ticks"))

    def owns(self, handle: Handle, pid: int) -> bool:
        try:
            return bool(os.getpgid(pid) == handle.get("pid"))
        except OSError:  # gone, or in another pid namespace
            return False
