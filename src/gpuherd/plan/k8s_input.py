"""`plan --from-k8s`: read manifests and turn them into (or add them to) a Config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpuherd.spec.from_k8s import gpus_from_nodes, tenants_from_manifests
from gpuherd.spec.model import Config
from gpuherd.yamlpos import YamlError, load_documents


class ManifestError(Exception):
    pass


def read_manifests(paths: list[Path]) -> list[Any]:
    docs: list[Any] = []
    for path in paths:
        files = (
            sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml", ".json"))
            if path.is_dir()
            else [path]
        )
        for file in files:
            try:
                for doc in load_documents(file.read_text(), source=str(file)):
                    data = doc.data
                    if isinstance(data, dict) and data.get("kind") == "List":
                        docs += [i for i in data.get("items") or [] if isinstance(i, dict)]
                    else:
                        docs.append(data)
            except YamlError as exc:
                raise ManifestError(str(exc)) from None
            except OSError as exc:
                raise ManifestError(f"{file}: {exc.strerror or exc}") from None
    return docs


def merged_config(base: Config | None, docs: list[Any]) -> dict[str, Any]:
    """Raw config data: the base file's (if any) plus GPUs from Nodes and tenants from workloads.
    Tenants already declared in the base file win over derived ones of the same name."""
    data: dict[str, Any] = (
        base.model_dump(by_alias=True, exclude_none=True) if base else {"version": 1}
    )
    gpus = data.get("gpus") or gpus_from_nodes(docs)
    data["gpus"] = gpus
    by_node = {g["node"]: g["name"] for g in gpus if g.get("node")}
    derived = tenants_from_manifests(docs, by_node)
    data["tenants"] = {**derived, **(data.get("tenants") or {})}
    return data
