"""Docker's daemon.json must register the runtime it names as default.

What it does: `default-runtime` must name a runtime under `runtimes` (or runc); each runtime
needs a `path`, and a path that is a near miss of nvidia-container-runtime is flagged as a typo;
`default-runtime: nvidia` is reported as info.

Why it matters: dockerd refuses to start with an unknown default runtime; a typo in the path
fails every `--runtime nvidia` container; with nvidia as default every container can take GPUs
through NVIDIA_VISIBLE_DEVICES.

Example:
    {"default-runtime": "nvidia"}

Fix: `sudo nvidia-ctk runtime configure --runtime=docker` writes a correct registration.
"""

from __future__ import annotations

from collections.abc import Iterator

from gpuherd.lint.model import Problem, Severity
from gpuherd.lint.rules.api import Options, RuleOptions
from gpuherd.lint.rules.base import LintContext, judged
from gpuherd.runtimecfg.base import Root
from gpuherd.runtimecfg.docker import judge_daemon_json

ID = "runtime-docker"
SEVERITY: Severity = "error"
OPTIONS: Options = {}


def check(ctx: LintContext, options: RuleOptions) -> Iterator[Problem]:
    return judged(ctx, "docker", lambda rf: judge_daemon_json(rf.data, Root(), check_paths=False))
