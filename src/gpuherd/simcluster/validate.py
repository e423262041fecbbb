"""Create bodies checked as the real server would: the OpenAPI schema in strict mode (through
kubernetes-validate), plus the few cross-field rules gpuherd's manifests can trip."""

from __future__ import annotations

import functools
import re
from typing import Any

from gpuherd.simcluster import errors
from gpuherd.simcluster.selectors import match_label_selector

Obj = dict[str, Any]
SCHEMA_VERSION = "1.33.0"  # the minor version /version reports


def _field(path: list[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<root>"


def _qualified(obj: Obj) -> str:
    """`Pod`, `Deployment.apps`: how the real server names a kind in 422 messages."""
    api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
    return f"{kind}.{api_version.split('/', maxsplit=1)[0]}" if "/" in api_version else kind


@functools.cache
def _validator(kind: str, api_version: str) -> Any:
    """kubernetes-validate's strict schema for one type, built once: its own `validate()`
    re-reads the shared definitions file on every call (40 ms a body)."""
    import jsonschema
    from kubernetes_validate.utils import schema_contents
    from referencing import Registry, Resource

    # rbac.authorization.k8s.io/v1 -> rbac-v1, as the schema files are named
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    folder = f"kubernetes-json-schema/v{SCHEMA_VERSION}-local-strict"
    schema = schema_contents(f"{folder}/{kind.lower()}-{group_version}.json", SCHEMA_VERSION)
    definitions = schema_contents(f"{folder}/_definitions.json", SCHEMA_VERSION)
    registry: Any = Resource.from_contents(schema) @ Registry()
    registry = Resource.from_contents(definitions) @ registry
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def check_schema(obj: Obj) -> None:
    import jsonschema

    meta = obj.get("metadata") or {}
    name = str(meta.get("name") or meta.get("generateName", ""))
    try:
        validator = _validator(str(obj.get("kind", "")), str(obj.get("apiVersion", "")))
    except OSError as exc:
        raise errors.bad_request(
            f"no schema for {obj.get('apiVersion')}/{obj.get('kind')}: {exc}"
        ) from exc
    error = jsonschema.exceptions.best_match(validator.iter_errors(obj))
    if error is not None:
        raise errors.invalid(_qualified(obj), name, _field(list(error.path)), error.message)


def check_semantics(obj: Obj) -> None:
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    qualified = _qualified(obj)
    name = str((obj.get("metadata") or {}).get("name", ""))
    if kind in ("Deployment", "ReplicaSet", "StatefulSet"):
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not spec.get("selector"):
            raise errors.invalid(qualified, name, "spec.selector", "Required value")
        if not match_label_selector(spec["selector"], labels):
            raise errors.invalid(
                qualified,
                name,
                "spec.template.metadata.labels",
                "`selector` does not match template `labels`",
                value=labels,
            )
    if kind == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
        _check_schedule(qualified, name, (obj.get("spec") or {}).get("schedule"))
    if kind in ("Job", "CronJob"):
        policy = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy")
        if policy not in ("Never", "OnFailure"):
            raise errors.invalid(
                qualified,
                name,
                ("spec.jobTemplate." if kind == "CronJob" else "")
                + "spec.template.spec.restartPolicy",
                'supported values: "OnFailure", "Never"',
                value=policy or "Always",
            )


def _check_schedule(kind: str, name: str, schedule: Any) -> None:
    from croniter import croniter

    if not isinstance(schedule, str) or not croniter.is_valid(schedule):
        raise errors.invalid(
            kind, name, "spec.schedule", "unparseable cron schedule", value=schedule
        )


_EVENT_LIMITS = (("reportingInstance", 128), ("action", 128), ("reason", 128), ("message", 1024))


def check_event(obj: Obj, namespace: str) -> None:
    """The API server's checks on a core/v1 Event (`legacyValidateEvent`): a legacy event (no
    eventTime) lives in its object's namespace; one with an eventTime names who reported it."""
    name = str((obj.get("metadata") or {}).get("name", ""))
    involved = str((obj.get("involvedObject") or {}).get("namespace") or "")

    def bad(field: str, message: str, value: Any = None) -> errors.ApiError:
        return errors.invalid("Event", name, field, message, value=value)

    if not obj.get("eventTime"):
        if (not involved and namespace not in ("", "default")) or (
            involved and namespace != involved
        ):
            raise bad("involvedObject.namespace", "does not match event.namespace", involved)
        return
    if not involved and namespace not in ("default", "kube-system"):
        raise bad("involvedObject.namespace", "does not match event.namespace", involved)
    for field in ("reportingComponent", "reportingInstance", "action", "reason"):
        if not obj.get(field):
            raise bad(field, "Required value")
    for field, limit in _EVENT_LIMITS:
        if len(str(obj.get(field) or "")) > limit:
            raise bad(field, f"can have at most {limit} characters", "")
