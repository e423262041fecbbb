"""A config job's Kubernetes Job template (`jobs.NAME.kubernetes.template`), checked when the
config loads as the API server would check it when the broker creates the Job: a Job that can
never be created must fail `gpuherd validate`, not a 4 AM run after the tenants were released.

The template is a whole batch/v1 Job object or only its `spec`; either way it becomes a Job
object. Where kubernetes-validate is installed (the `simcluster` extra) it is checked against
the strict schema of the API version the simulated cluster serves; without it (the broker's
image), structurally. The
few rules a schema cannot say (a Job's containers need an image, its restartPolicy must be
Never or OnFailure) are checked either way.
"""

from __future__ import annotations

import copy
import functools
import re
from typing import Any

Obj = dict[str, Any]
SCHEMA_VERSION = "1.33.0"
_GROUP_VERSION = "batch/v1"


def _dotted(path: list[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<root>"


@functools.cache
def _validator() -> Any:
    """kubernetes-validate's strict Job schema, built once (None when it is not installed)."""
    try:
        import jsonschema
        from kubernetes_validate.utils import schema_contents
        from referencing import Registry, Resource
    except ImportError:
        return None
    folder = f"kubernetes-json-schema/v{SCHEMA_VERSION}-local-strict"
    try:
        schema = schema_contents(f"{folder}/job-batch-v1.json", SCHEMA_VERSION)
        definitions = schema_contents(f"{folder}/_definitions.json", SCHEMA_VERSION)
    except OSError:
        return None
    registry: Any = Resource.from_contents(schema) @ Registry()
    registry = Resource.from_contents(definitions) @ registry
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def _schema_problem(job: Obj) -> tuple[list[Any], str] | None:
    validator = _validator()
    if validator is None:
        return None
    import jsonschema

    error = jsonschema.exceptions.best_match(validator.iter_errors(job))
    return None if error is None else (list(error.path), error.message)


def _structural_problem(job: Obj) -> tuple[list[Any], str] | None:  # noqa: PLR0911 - one return per rule
    """What the API server refuses that the schema does not say (and, without the schema, the
    shape of the parts gpuherd reads)."""
    spec = job.get("spec")
    if not isinstance(spec, dict):
        return ["spec"], "expected a mapping (the Job's spec)"
    template = spec.get("template")
    if not isinstance(template, dict):
        return ["spec", "template"], "Required value: the pod template"
    pod = template.get("spec")
    if not isinstance(pod, dict):
        return ["spec", "template", "spec"], "Required value: the pod spec"
    containers = pod.get("containers")
    if not isinstance(containers, list) or not containers:
        return ["spec", "template", "spec", "containers"], "Required value: at least one container"
    for i, container in enumerate(containers):
        where = ["spec", "template", "spec", "containers", i]
        if not isinstance(container, dict):
            return where, "expected a mapping"
        for key in ("name", "image"):
            if not isinstance(container.get(key), str) or not container[key]:
                return [*where, key], "Required value"
    policy = pod.get("restartPolicy")
    if policy not in ("Never", "OnFailure"):
        return (
            ["spec", "template", "spec", "restartPolicy"],
            f'supported values: "OnFailure", "Never" (got {policy or "Always, the default"})',
        )
    return None


def job_template(value: Any) -> Obj:
    """The template as a batch/v1 Job object; raises ValueError naming the field inside it."""
    if not isinstance(value, dict):
        raise ValueError("expected a batch/v1 Job (or a Job's spec) as a mapping")
    given_object = "kind" in value or "apiVersion" in value
    if given_object:
        if value.get("apiVersion") != _GROUP_VERSION or value.get("kind") != "Job":
            raise ValueError(
                f"expected a batch/v1 Job, got {value.get('apiVersion')}/{value.get('kind')}"
            )
        job = copy.deepcopy(value)
    else:
        job = {"apiVersion": _GROUP_VERSION, "kind": "Job", "spec": copy.deepcopy(value)}
    if "status" in job:
        raise ValueError("a template has no status")
    meta = job.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise ValueError("metadata: expected a mapping")
    checked = {**job, "metadata": {**meta, "name": meta.get("name") or "template"}}
    problem = _schema_problem(checked) or _structural_problem(checked)
    if problem is not None:
        path, message = problem
        if not given_object and path[:1] == ["spec"]:
            path = path[1:]  # as the user wrote it: the spec alone
        raise ValueError(f"not a valid batch/v1 Job: {_dotted(path)}: {message}")
    return job


_INVALID = re.compile(r"[^a-z0-9-]+")


def object_name(*parts: str, limit: int = 63) -> str:
    """A valid Job (DNS-1123 label) name from parts: lower case, other characters as '-',
    the last part (an id) always kept whole."""
    *prefix, last = parts
    head = _INVALID.sub("-", "-".join(prefix).lower()).strip("-")
    room = limit - len(last) - 1
    head = head[:room].rstrip("-") if room > 0 else ""
    return f"{head}-{last}" if head else last
