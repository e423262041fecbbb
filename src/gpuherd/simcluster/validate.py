"""Create bodies checked as the real server would: the OpenAPI schema in strict mode (through
kubernetes-validate), plus the few cross-field rules gpuherd's manifests can trip."""

from __future__ import annotations

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


def check_schema(obj: Obj) -> None:
    import kubernetes_validate

    name = str(
        (obj.get("metadata") or {}).get("name")
        or (obj.get("metadata") or {}).get("generateName", "")
    )
    try:
        kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        raise errors.invalid(_qualified(obj), name, _field(list(exc.path)), exc.message) from exc
    except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as exc:
        raise errors.bad_request(
            f"no schema for {obj.get('apiVersion')}/{obj.get('kind')}: {exc}"
        ) from exc


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
    if kind == "Job":
        policy = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy")
        if policy not in ("Never", "OnFailure"):
            raise errors.invalid(
                qualified,
                name,
                "spec.template.spec.restartPolicy",
                'supported values: "OnFailure", "Never"',
                value=policy or "Always",
            )
