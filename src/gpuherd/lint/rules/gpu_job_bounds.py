"""GPU CronJobs and Jobs need bounds: no overlapping runs, a deadline, an end.

What it does: flags GPU CronJobs without `concurrencyPolicy: Forbid` or without
`activeDeadlineSeconds` on their Job, and GPU Jobs (and CronJob jobs) without
`activeDeadlineSeconds` that can never complete: a container that runs `sleep infinity` (or
`tail -f /dev/null`), or a server container (one with ports, or a serving command) beside
other containers, since a Job completes only when every container exits.

Why it matters: overlapping runs of a GPU job double its VRAM and OOM each other; a run that
falls back to the CPU (a nightly render: over an hour instead of minutes) holds the node
until someone notices; a Job that never completes holds its GPU forever.

Example:
    kind: CronJob
    spec: {schedule: "0 4 * * *", jobTemplate: ...}     # Allow, no deadline

Fix: `concurrencyPolicy: Forbid`, `activeDeadlineSeconds` a little over the expected run time;
run servers as a native sidecar (an init container with `restartPolicy: Always`) so the Job
ends with its client.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from gpuherd.lint.model import Problem, Severity
from gpuherd.lint.rules.api import Option, Options, RuleOptions
from gpuherd.lint.rules.base import LintContext, finding, pod_gpus
from gpuherd.lint.sources.access import as_dict, dig
from gpuherd.lint.sources.k8s import K8sObject, containers

ID = "gpu-job-bounds"
SEVERITY: Severity = "warning"
OPTIONS: Options = {
    "require_backoff_limit": Option(
        False, "also flag GPU Jobs without an explicit backoffLimit (the default retries 6 times)"
    ),
}


_FOREVER = re.compile(r"sleep\s+(infinity|inf)\b|tail\s+-f\s+/dev/null")
_SERVER = re.compile(r"\bserve\b|server|--port\b|--host\b|vllm/vllm-openai|tritonserver|ollama")


def _never_ends(obj: K8sObject) -> str | None:
    """Why the pod's regular containers never all exit, or None."""
    regular = [c for c in containers(obj) if not c.init]
    for c in regular:
        forever = _FOREVER.search(c.command_text())
        if forever:
            return f"container {c.name} runs forever ({forever[0]})"
    if len(regular) > 1:
        for c in regular:
            if c.data.get("ports") or _SERVER.search(c.command_text()):
                return f"container {c.name} is a server beside {len(regular) - 1} other(s)"
    return None


def check(ctx: LintContext, options: RuleOptions) -> Iterator[Problem]:
    for obj in ctx.objects:
        if obj.kind not in ("CronJob", "Job") or pod_gpus(obj) == 0:
            continue
        spec = as_dict(obj.data.get("spec"))
        job_path: tuple[str, ...] = ("spec",)
        if obj.kind == "CronJob":
            if spec.get("concurrencyPolicy", "Allow") != "Forbid":
                has = "concurrencyPolicy" in spec
                yield finding(
                    obj,
                    obj.value_pos("spec", "concurrencyPolicy") if has else obj.value_pos("spec"),
                    f"concurrencyPolicy is {spec.get('concurrencyPolicy', 'Allow (default)')}: "
                    "overlapping runs double the job's VRAM",
                    "set concurrencyPolicy: Forbid",
                )
            job = as_dict(dig(spec, "jobTemplate", "spec"))
            if "activeDeadlineSeconds" not in job:
                yield finding(
                    obj,
                    obj.value_pos("spec", "jobTemplate"),
                    "no activeDeadlineSeconds: a run stuck on the CPU holds the node for hours",
                    "set jobTemplate.spec.activeDeadlineSeconds",
                )
                continue
            continue
        if options["require_backoff_limit"] and "backoffLimit" not in spec:
            yield finding(
                obj,
                obj.value_pos("spec"),
                "no backoffLimit: a failing GPU run is retried 6 times (the default)",
                "set backoffLimit: 1 (or what the job can afford)",
            )
        if "activeDeadlineSeconds" not in spec:
            why = _never_ends(obj)
            if why is not None:
                yield finding(
                    obj,
                    obj.value_pos(*job_path),
                    f"the GPU Job never completes ({why}) and has no activeDeadlineSeconds: it "
                    "holds its GPU forever",
                    "set activeDeadlineSeconds; run a server as a native sidecar (init "
                    "container with restartPolicy: Always) so the Job ends with its client",
                )
