"""Update rules the real API server enforces on fields that may not change, with its messages:
selectors, a Job's pod template (open only while suspended and never started, and then only to
its scheduling directives), a StatefulSet's fixed spec fields, and a pod's spec."""

from __future__ import annotations

from typing import Any

from gpuherd.simcluster import errors
from gpuherd.simcluster.resources import Resource

Obj = dict[str, Any]
# What a suspended Job that never started may change in its pod template (KEP-2926).
_JOB_MUTABLE = ("nodeSelector", "affinity", "tolerations", "schedulingGates")
_STS_MUTABLE = (
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
)
_POD_FORBIDDEN = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only "
    "additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be "
    "set to 1 if it was previously negative)"
)


def _immutable(res: Resource, name: str, field: str, value: Any) -> errors.ApiError:
    return errors.invalid(res.kind_qualified, name, field, "field is immutable", value=value)


def _without(spec: Obj, keys: tuple[str, ...]) -> Obj:
    return {k: v for k, v in spec.items() if k not in keys}


def _pod_spec_changes_ok(old: Obj, new: Obj) -> bool:
    def strip(spec: Obj) -> Obj:
        out = _without(spec, ("activeDeadlineSeconds", "tolerations"))
        for key in ("containers", "initContainers"):
            out[key] = [_without(c, ("image",)) for c in spec.get(key) or []]
        return out

    old_tolerations = old.get("tolerations") or []
    kept = all(t in (new.get("tolerations") or []) for t in old_tolerations)
    return strip(old) == strip(new) and kept


def check_update(res: Resource, old: Obj, new: Obj) -> None:
    """Raise 422 Invalid when `new` changes a field `old` fixes."""
    name = old["metadata"]["name"]
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    if res.kind in ("Deployment", "ReplicaSet", "StatefulSet", "Job") and old_spec.get(
        "selector"
    ) != new_spec.get("selector"):
        raise _immutable(res, name, "spec.selector", new_spec.get("selector"))
    if res.kind == "StatefulSet" and _without(old_spec, _STS_MUTABLE) != _without(
        new_spec, _STS_MUTABLE
    ):
        raise errors.invalid(
            res.kind_qualified,
            name,
            "spec",
            "Forbidden: updates to statefulset spec for fields other than 'replicas', "
            "'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' "
            "and 'minReadySeconds' are forbidden",
        )
    if res.kind == "Job":
        _check_job(res, old, new)
    if res.kind == "Pod" and not _pod_spec_changes_ok(old_spec, new_spec):
        raise errors.invalid(res.kind_qualified, name, "spec", f"Forbidden: {_POD_FORBIDDEN}")


def _check_job(res: Resource, old: Obj, new: Obj) -> None:
    name = old["metadata"]["name"]
    old_spec, new_spec = old["spec"], new.get("spec") or {}
    if old_spec.get("completions") != new_spec.get("completions"):
        raise _immutable(res, name, "spec.completions", new_spec.get("completions"))
    old_t, new_t = old_spec.get("template") or {}, new_spec.get("template") or {}
    if old_t == new_t:
        return
    never_started = old_spec.get("suspend") and not (old.get("status") or {}).get("startTime")
    same_rest = _without(old_t.get("spec") or {}, _JOB_MUTABLE) == _without(
        new_t.get("spec") or {}, _JOB_MUTABLE
    )
    if not (never_started and same_rest):
        raise _immutable(res, name, "spec.template", new_t)
