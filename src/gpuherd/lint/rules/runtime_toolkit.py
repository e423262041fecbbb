"""nvidia-container-runtime's config.toml must not loop, and should not let any pod take GPUs.

What it does: checks `[nvidia-container-runtime] runtimes`: an entry that is the nvidia runtime
itself makes every container start call itself; and flags
`accept-nvidia-visible-devices-envvar-when-unprivileged = true` (the default).

Why it matters: the runtime execs the first existing entry of `runtimes` and never checks it
against itself (a hand-written runc wrapper for CI workers had to work around exactly this).
With the environment variable accepted, any pod on a shared node takes every GPU with
NVIDIA_VISIBLE_DEVICES=all, outside the scheduler. `gpuherd doctor` runs the same judgement on
a host, following symlinks and wrapper scripts.

Example:
    [nvidia-container-runtime]
    runtimes = ["nvidia-container-runtime", "runc"]

Fix: `runtimes = ["runc", "crun"]` (or the real runc's path); on shared nodes set the variable
to false and use volume-mount device lists.
"""

from __future__ import annotations

from collections.abc import Iterator

from gpuherd.lint.model import Problem, Severity
from gpuherd.lint.rules.api import Options, RuleOptions
from gpuherd.lint.rules.base import LintContext, judged
from gpuherd.runtimecfg.toolkit import judge_toolkit_config

ID = "runtime-toolkit"
SEVERITY: Severity = "error"
OPTIONS: Options = {}


def check(ctx: LintContext, options: RuleOptions) -> Iterator[Problem]:
    return judged(ctx, "toolkit", lambda rf: judge_toolkit_config(rf.data, None))
