"""The job's process group leader: runs the job's command, and writes its exit status to a
file before it exits, so a broker restarted meanwhile still learns how the job ended.

    python -m gpuherd.broker.jobwrap EXIT_FILE -- CMD ARGS...

It ignores TERM and INT (they reach the job through the process group) and waits for the
job; if the job died of a signal it dies of the same one, so its parent sees what it would
have seen without the wrapper. A KILL to the group ends it before it writes: the broker that
sent that KILL knows why.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


def _record(path: Path, code: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(f"{code}\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write("usage: python -m gpuherd.broker.jobwrap EXIT_FILE -- CMD ARGS...\n")
        return 2
    exit_file, command = Path(argv[0]), argv[2:]
    # Caught, not ignored: an ignored signal would stay ignored in the job after exec, a
    # caught one is back to its default there.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    try:
        child = subprocess.Popen(command)
    except OSError as exc:
        sys.stderr.write(f"gpuherd: cannot run {command[0]}: {exc.strerror or exc}\n")
        _record(exit_file, 127)
        return 127
    code = child.wait()
    _record(exit_file, code)
    if code < 0:  # died of a signal: so does the wrapper
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
