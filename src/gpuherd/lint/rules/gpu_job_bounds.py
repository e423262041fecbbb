"""GPU CronJobs and Jobs need bounds: no overlapping runs, a deadline, a retry limit.

What it does: flags GPU CronJobs without `concurrencyPolicy: Forbid` or without
`activeDeadlineSeconds` on their Job, and GPU Jobs without an explicit `backoffLimit`.

Why it matters: overlapping runs of a GPU job double its VRAM and OOM each other; a run that
falls back to the CPU (seed 000: over an hour instead of minutes) holds the node until someone
notices; unbounded retries repeat a failing GPU run six times.

Example:
    kind: CronJob
    spec: {schedule: "0 4 * * *", jobTemplate: ...}     # Allow, no deadline

Fix: `concurrencyPolicy: Forbid`, `activeDeadlineSeconds` a little over the expected run time,
`backoffLimit: 1`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

from gpuherd.lint.model import Finding
from gpuherd.lint.rules.base import LintContext, finding, pod_gpus
from gpuherd.lint.sources.access import as_dict, dig

ID = "gpu-job-bounds"
SEVERITY = "warning"
_rule = sys.modules[__name__]


def check(ctx: LintContext) -> Iterator[Finding]:
    for obj in ctx.objects:
        if obj.kind not in ("CronJob", "Job") or pod_gpus(obj) == 0:
            continue
        spec = as_dict(obj.data.get("spec"))
        if obj.kind == "CronJob":
            if spec.get("concurrencyPolicy", "Allow") != "Forbid":
                has = "concurrencyPolicy" in spec
                yield finding(
                    _rule,
                    obj,
                    obj.value_pos("spec", "concurrencyPolicy") if has else obj.value_pos("spec"),
                    f"concurrencyPolicy is {spec.get('concurrencyPolicy', 'Allow (default)')}: "
                    "overlapping runs double the job's VRAM",
                    "set concurrencyPolicy: Forbid",
                )
            job = as_dict(dig(spec, "jobTemplate", "spec"))
            if "activeDeadlineSeconds" not in job:
                yield finding(
                    _rule,
                    obj,
                    obj.value_pos("spec", "jobTemplate"),
                    "no activeDeadlineSeconds: a run stuck on the CPU holds the node for hours",
                    "set jobTemplate.spec.activeDeadlineSeconds",
                )
        elif "backoffLimit" not in spec:
            yield finding(
                _rule,
                obj,
                obj.value_pos("spec"),
                "no backoffLimit: a failing GPU run is retried 6 times (the default)",
                "set backoffLimit: 1 (or what the job can afford)",
            )
