"""Jobs as local processes: each in its own process group, led by a small `sh` that records the
job's exit status in a file; found again after a restart by pid + start time, or by job id."""

from __future__ import annotations

import os
import shutil
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

# The group leader. A constant script: the job's argv arrives as "$@" and is never parsed by
# the shell (no user text is ever part of a script). `sh` costs a millisecond where a Python
# wrapper cost tens: it starts with every job. TERM and INT get a handler, not an ignore, so the
# job gets their default back at exec; the shell outlives the job, writes its status down (a
# signal N as -N; builtins only, no process more per job; a half-written file reads as
# "unknown") and, if the job died of a signal, dies of the same one, so the broker sees what it
# would have seen without it. A KILL to the group ends it before it writes: the broker
# that sent the KILL knows why.
LEADER = """\
trap : TERM INT
exit_file=$1
shift
"$@"
code=$?
status=$code
if [ "$code" -gt 128 ] && [ "$code" -lt 160 ]; then status=-$((code - 128)); fi
printf '%s\\n' "$status" > "$exit_file"
if [ "$status" -lt 0 ]; then trap - TERM INT; kill -$((code - 128)) $$; fi
exit "$code"
"""


def _exit_file(log_dir: Path, job_id: str) -> Path:
    return log_dir / f"{job_id}.exit"


def _recorded(path: str | None) -> int | None:
    if not path:
        return None
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


class LocalLauncher:
    name = "local"

    def __init__(self, *, on_exit: Callable[[], None] | None = None) -> None:
        self._on_exit = on_exit  # wakes the engine: restore the tenants now, not at next poll
        self._procs: dict[int, subprocess.Popen[bytes]] = {}  # our children, by pid

    def prepare(self, job_id: JobId, name: str, job: JobSpec) -> list[str]:
        if job.command is None:  # a Kubernetes Job template
            return ["it runs as a Kubernetes Job: only gpuherd serve --kubernetes runs it"]
        return []

    def launch(
        self, job_id: JobId, job: JobSpec, *, gpu: GpuSpec, workdir: Path, log_dir: Path
    ) -> Handle:
        if job.command is None:  # a Kubernetes Job template: refused by prepare already
            raise LaunchError(
                "it runs as a Kubernetes Job: only gpuherd serve --kubernetes runs it"
            )
        log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        device = gpu.uuid or str(gpu.index or 0)
        env = {
            **os.environ,
            **job.env,
            "CUDA_VISIBLE_DEVICES": device,
            "NVIDIA_VISIBLE_DEVICES": device,
            "GPUHERD_JOB_ID": job_id,
        }
        program = job.command[0]
        where = program if "/" in program else shutil.which(program, path=env.get("PATH"))
        if where is None or not (workdir / where).exists():
            raise LaunchError(f"{program}: command not found")
        if not workdir.is_dir():
            raise LaunchError(f"workdir {workdir} is not a directory")
        exit_file = _exit_file(log_dir, job_id)
        exit_file.unlink(missing_ok=True)
        wrapper = ["/bin/sh", "-c", LEADER, "gpuherd-job", str(exit_file)]
        out, err = log_dir / f"{job_id}.out", log_dir / f"{job_id}.err"
        try:
            with out.open("wb") as stdout, err.open("wb") as stderr:
                proc = subprocess.Popen(
                    [*wrapper, *job.command],
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
        return Handle.of(self.name, pid=proc.pid, ticks=start_ticks(proc.pid), exit=str(exit_file))

    def poll(self, handle: Handle) -> Exited | None:
        pid = int(handle.get("pid"))
        proc = self._procs.get(pid)
        if proc is not None:
            code = proc.poll()  # asked again, it answers the same
            return None if code is None else Exited(code)
        if start_ticks(pid) == handle.get("ticks"):
            return None
        # Not our child (adopted after a restart): its leader wrote the status down.
        return Exited(_recorded(handle.get("exit")))

    def stop(self, handle: Handle, *, grace: float) -> Exited:
        pid = int(handle.get("pid"))
        proc = self._procs.get(pid)
        if proc is None and start_ticks(pid) != handle.get("ticks"):
            return self.poll(handle) or Exited(None)  # gone already: never signal a recycled pid
        reap = proc.poll if proc is not None else lambda: None
        terminate_group(pid, grace=grace, reap=reap)
        if proc is not None:
            return Exited(proc.wait())
        return Exited(_recorded(handle.get("exit")))

    def adopt(self, handle: Handle) -> bool:
        return bool(start_ticks(int(handle.get("pid"))) == handle.get("ticks"))

    def find(self, job_id: JobId, log_dir: Path) -> Handle | None:
        """The group leader of a job started just before a crash, before its handle was
        journaled: the process whose environment names the job and that leads its group."""
        marker = f"GPUHERD_JOB_ID={job_id}".encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    environ = f.read().split(b"\0")
                leads = os.getpgid(pid) == pid
            except OSError:
                continue
            if leads and marker in environ:
                exit_file = str(_exit_file(log_dir, job_id))
                return Handle.of(self.name, pid=pid, ticks=start_ticks(pid), exit=exit_file)
        return None

    def owns(self, handle: Handle, pid: int) -> bool:
        try:
            return bool(os.getpgid(pid) == handle.get("pid"))
        except OSError:  # gone, or in another pid namespace
            return False
