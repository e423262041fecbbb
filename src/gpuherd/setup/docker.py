"""Docker's daemon.json: register `runtimes.nvidia`, keep every other key as it was.

Installers that rewrote daemon.json whole lost people's `features`, log and storage settings;
this edits the parsed object and writes it back in the file's own indentation. The default
runtime changes only when asked (`--set-default`): an existing default is kept.
"""

from __future__ import annotations

import json
import re
from typing import Any

from gpuherd.runtimecfg.base import Root
from gpuherd.setup.model import Change, Plan, SetupInputError

DAEMON_JSON = "/etc/docker/daemon.json"
_INDENT = re.compile(r"^([ \t]+)\S", re.MULTILINE)


def parse_daemon_json(path: str, raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw.decode()) if raw.strip() else {}
    except UnicodeDecodeError as exc:
        raise SetupInputError(path, f"not UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise SetupInputError(path, exc.msg, exc.lineno, exc.colno) from None
    except RecursionError:
        raise SetupInputError(path, "nested too deeply") from None
    if not isinstance(data, dict):
        raise SetupInputError(path, "must be a JSON object ({...})", 1, 1)
    runtimes = data.get("runtimes")
    if runtimes is not None and not isinstance(runtimes, dict):
        raise SetupInputError(path, "`runtimes` must be an object of runtime name -> {path}")
    if "features" in data and not isinstance(data["features"], dict):
        raise SetupInputError(path, "`features` must be an object")
    return data


def _dump(data: dict[str, Any], original: str) -> bytes:
    found = _INDENT.search(original)
    indent: str | int = found.group(1) if found else 4
    text = json.dumps(data, indent=indent, ensure_ascii=False)
    return (text + "\n").encode()


def _is_nvidia_binary(root: Root, path: Any) -> bool:
    if not isinstance(path, str) or not path:
        return False
    found = root.which(path)
    return found is not None and "nvidia-container-runtime" in found.rsplit("/", 1)[-1]


def plan_docker(root: Root, binary: str, *, set_default: bool, cdi: bool) -> Plan:
    plan = Plan(
        "docker",
        effective_config=["docker", "info", "--format", "{{json .Runtimes}} {{.DefaultRuntime}}"],
    )
    outside = root / DAEMON_JSON
    before = outside.read_bytes() if outside.exists() else None
    data = parse_daemon_json(DAEMON_JSON, before) if before is not None else {}
    reasons: list[str] = []
    runtimes = data.get("runtimes")
    if not isinstance(runtimes, dict):
        runtimes = data["runtimes"] = {}
    current = runtimes.get("nvidia")
    if isinstance(current, dict) and _is_nvidia_binary(root, current.get("path")):
        plan.evidence.append(f'{DAEMON_JSON}: runtimes.nvidia.path = "{current["path"]}"')
    elif isinstance(current, dict):
        reasons.append(f"runtimes.nvidia.path {current.get('path')!r} -> {binary!r}")
        current["path"] = binary
    else:
        reasons.append(f'add runtimes.nvidia (path "{binary}")')
        runtimes["nvidia"] = {"path": binary}
    default = data.get("default-runtime")
    if set_default and default != "nvidia":
        reasons.append(f"default-runtime {default!r} -> 'nvidia' (--set-default)")
        data["default-runtime"] = "nvidia"
    elif default == "nvidia":
        plan.evidence.append(f'{DAEMON_JSON}: default-runtime = "nvidia"')
    elif default is not None:
        plan.notes.append(f"kept default-runtime {default!r} (use --set-default to change it)")
    features = data.get("features", {})
    if cdi and features.get("cdi") is not True:
        reasons.append("features.cdi = true (--cdi; Docker 25 or newer)")
        data["features"] = {**features, "cdi": True}
    elif features.get("cdi") is True:
        plan.evidence.append(f"{DAEMON_JSON}: features.cdi = true")
    if reasons:
        after = _dump(data, (before or b"").decode())
        plan.changes.append(Change(DAEMON_JSON, before, after, "; ".join(reasons)))
        plan.commands.append(["systemctl", "restart", "docker"])
    return plan
