"""Discovery documents: /version, /api, /apis, /api/v1 and /apis/GROUP[/VERSION]."""

from __future__ import annotations

from typing import Any

from gpuherd.simcluster.resources import RESOURCES, group_versions

Obj = dict[str, Any]
VERSION = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.6+k3s1",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-11-12T00:00:00Z",
    "goVersion": "go1.24.9",
    "compiler": "gc",
    "platform": "linux/amd64",
}
_SERVER_ADDRESSES = [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]


def _group(name: str, versions: list[str]) -> Obj:
    listed = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": listed, "preferredVersion": listed[0]}


def _resource_list(group: str, version: str) -> Obj | None:
    entries = [
        e for r in RESOURCES if r.group == group and r.version == version for e in r.discovery()
    ]
    if not entries:
        return None
    gv = f"{group}/{version}" if group else version
    doc: Obj = {"kind": "APIResourceList"}
    if group:
        doc["apiVersion"] = "v1"
    doc.update(groupVersion=gv, resources=entries)
    return doc


def document(path: str) -> Obj | None:  # noqa: PLR0911 - one return per discovery path
    """The discovery document served at `path`, or None when it is not a discovery path."""
    if path == "/version":
        return VERSION
    if path == "/api":
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": _SERVER_ADDRESSES,
        }
    groups = group_versions()
    if path == "/apis":
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [_group(g, v) for g, v in groups.items()],
        }
    parts = [p for p in path.split("/") if p]
    if len(parts) == 2 and parts[0] == "api":
        return _resource_list("", parts[1])
    if len(parts) == 2 and parts[0] == "apis" and parts[1] in groups:
        return {"kind": "APIGroup", "apiVersion": "v1", **_group(parts[1], groups[parts[1]])}
    if len(parts) == 3 and parts[0] == "apis":
        return _resource_list(parts[1], parts[2])
    return None
