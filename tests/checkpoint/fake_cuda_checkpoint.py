"""A fake `cuda-checkpoint` binary over the simulated driver ($GPUHERD_SIM_DIR): the real flags,
the real output (the state word; `Could not ... process ID P: "<driver text>"` and exit 1 on
failure). $FAKE_CUDA_CHECKPOINT=no-api imitates a driver without the API, =busy a process whose
lock times out."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gpuherd.gpu.sim import SimHost, SimIllegalState, SimNoSuchProcess, SimOutOfMemory


def main() -> int:  # noqa: PLR0911 - one exit per failure the real tool reports
    parser = argparse.ArgumentParser(prog="cuda-checkpoint")
    parser.add_argument("--get-state", action="store_true")
    parser.add_argument("--action", choices=["lock", "checkpoint", "restore", "unlock"])
    parser.add_argument("--toggle", action="store_true")
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--timeout", type=int, default=0)
    args = parser.parse_args()
    mode = os.environ.get("FAKE_CUDA_CHECKPOINT", "")
    verb = "get state" if args.get_state else (args.action or "toggle")
    prefix = f"Could not {verb} on process ID {args.pid}"
    if mode == "no-api":
        print(f'{prefix}: "operation not supported"', file=sys.stderr)
        return 1
    if mode == "busy" and args.action == "lock" and args.timeout > 0:
        print(f'{prefix}: "the operation timed out"', file=sys.stderr)
        return 1
    with SimHost(Path(os.environ["GPUHERD_SIM_DIR"])) as host:
        try:
            if args.get_state:
                print(host.state_of(args.pid))
                return 0
            action = {
                "lock": host.lock,
                "checkpoint": host.checkpoint,
                "restore": host.restore,
                "unlock": host.unlock,
            }[args.action]
            action(args.pid)
        except SimNoSuchProcess:
            print(f'{prefix}: "invalid argument"', file=sys.stderr)
            return 1
        except SimIllegalState:
            text = "the operation cannot be performed in the present state"
            print(f'{prefix}: "{text}"', file=sys.stderr)
            return 1
        except SimOutOfMemory:
            print(f'{prefix}: "out of memory"', file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
