"""Who owns a GPU process: its container, Kubernetes pod, systemd unit and gpuherd tenant.

NVML reports host PIDs only; the owner is read from /proc/PID/cgroup. Both cgroup v1 (one line
per hierarchy) and v2 (`0::/path`) are understood, with the path forms of the cgroupfs and
systemd drivers for Docker, containerd (incl. k3s), CRI-O and Podman. Everything reads under a
root directory so tests can point at a fixture tree.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gpuherd.gpu.base import GpuProcess, GpuSnapshot
from gpuherd.gpu.procinfo import ROOT, is_ancestor, read_cgroup
from gpuherd.ids import TenantName
from gpuherd.spec.model import Match, PodMatch, TenantSpec

__all__ = [
    "Attributed",
    "Origin",
    "PodInfo",
    "attribute",
    "origin_from_cgroup",
    "read_origin",
    "use_defaults",
]

_HEX64 = r"[0-9a-f]{64}"
# (prefix in a systemd scope name or cgroupfs parent, runtime)
_SCOPE_PREFIXES = (
    ("docker-", "docker"),
    ("cri-containerd-", "containerd"),
    ("crio-", "cri-o"),
    ("libpod-", "podman"),
    ("nerdctl-", "containerd"),
)
_SCOPE_RE = re.compile(rf"^(?P<prefix>[a-z-]*?-)?(?P<id>{_HEX64})(?:\.scope)?$")
_POD_RE = re.compile(
    r"pod(?P<uid>[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})"
)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a process runs. Every field is None when the cgroup path does not say."""

    container_id: str | None = None
    runtime: str | None = None
    pod_uid: str | None = None
    qos: str | None = None  # Guaranteed, Burstable or BestEffort
    systemd_unit: str | None = None


@dataclass(frozen=True, slots=True)
class PodInfo:
    """What a Kubernetes client knows of a pod UID; supplied by cluster code, absent on hosts."""

    namespace: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ip: str | None = None  # status.podIP: where app-native methods reach it ({pod_ip})


@dataclass(frozen=True, slots=True)
class Attributed:
    process: GpuProcess
    origin: Origin
    tenant: TenantName | None
    pod: PodInfo | None = None


def _paths(cgroup_text: str) -> list[tuple[str, str]]:
    """(controllers, path) per line; the v2 unified line has empty controllers."""
    result = []
    for line in cgroup_text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            result.append((parts[1], parts[2].strip()))
    return result


def _pod_of(path: str) -> tuple[str | None, str | None]:
    """Pod UID and QoS class from a kubepods cgroup path (systemd slices use '_' in UIDs)."""
    pod = _POD_RE.search(path)
    uid = pod.group("uid").replace("_", "-") if pod is not None else None
    lowered = path.lower()
    if "besteffort" in lowered:
        return uid, "BestEffort"
    if "burstable" in lowered:
        return uid, "Burstable"
    # Guaranteed pods sit directly under kubepods, with no QoS level in between.
    return uid, "Guaranteed" if uid is not None else None


def _container_of(parts: list[str]) -> tuple[str, str | None] | None:
    """(container id, runtime) from the components of one cgroup path, if it names one."""
    found: tuple[str, str | None] | None = None
    for i, part in enumerate(parts):
        match = _SCOPE_RE.match(part)
        if match is None:
            continue
        prefix = match.group("prefix") or ""
        if prefix.startswith("crio-conmon"):
            continue  # the monitor process beside a CRI-O container, not the container
        runtime = next((rt for pre, rt in _SCOPE_PREFIXES if prefix == pre), None)
        if runtime is None and i > 0 and parts[i - 1] == "docker":
            runtime = "docker"  # cgroupfs driver: /docker/<id>
        found = (match.group("id"), runtime)
    return found


def _unit_of(parts: list[str]) -> str | None:
    """The systemd service (or non-container scope) a cgroup path ends in."""
    services = [p for p in parts if p.endswith(".service")]
    if services:
        return services[-1]
    if parts[-1].endswith(".scope") and _SCOPE_RE.match(parts[-1]) is None:
        return parts[-1]
    return None


def origin_from_cgroup(cgroup_text: str) -> Origin:
    """Parse the text of /proc/PID/cgroup (v1: a line per hierarchy; v2: one `0::` line)."""
    container: tuple[str, str | None] | None = None
    pod_uid = qos = unit = None
    for controllers, path in _paths(cgroup_text):
        parts = [p for p in path.split("/") if p]
        if not parts:
            continue
        container = _container_of(parts) or container
        if "kubepods" in path:
            pod_uid, qos = _pod_of(path)
        if controllers in ("", "name=systemd") and unit is None:
            unit = _unit_of(parts)
    container_id, runtime = container if container is not None else (None, None)
    return Origin(container_id, runtime, pod_uid, qos, unit)


def read_origin(pid: int, root: Path = ROOT) -> Origin:
    text = read_cgroup(pid, root)
    return Origin() if text is None else origin_from_cgroup(text)


def _read_pid_file(path: str, root: Path) -> int | None:
    target = root / path.lstrip("/") if root != ROOT else Path(path)
    try:
        return int(target.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def matches(
    proc: GpuProcess,
    origin: Origin,
    match: Match,
    *,
    root: Path = ROOT,
    pod: PodInfo | None = None,
) -> bool:
    """True when every criterion `match` gives holds for this process."""
    checks = (
        match.cmdline is None
        or (proc.cmdline is not None and re.search(match.cmdline, " ".join(proc.cmdline))),
        match.container is None
        or (origin.container_id is not None and origin.container_id.startswith(match.container)),
        match.systemd_unit is None or origin.systemd_unit == _unit_name(match.systemd_unit),
        match.pod is None or _pod_matches(match.pod, origin, pod),
    )
    if not all(checks):
        return False
    if match.pid_file is not None:
        # A service's GPU work often runs in a child (ollama's runners): the pid or any ancestor.
        owner = _read_pid_file(match.pid_file, root)
        return owner is not None and is_ancestor(owner, proc.pid, root)
    return True


def _unit_name(name: str) -> str:
    return name if "." in name else f"{name}.service"


def _pod_matches(want: PodMatch, origin: Origin, pod: PodInfo | None) -> bool:
    if want.uid is not None and origin.pod_uid != want.uid:
        return False
    if want.namespace is None and want.name is None and not want.labels:
        return True
    if pod is None:  # namespace, name and labels need a Kubernetes client's PodInfo
        return False
    return (
        (want.namespace is None or pod.namespace == want.namespace)
        and (want.name is None or pod.name == want.name)
        and all(pod.labels.get(k) == v for k, v in want.labels.items())
    )


@dataclass
class _Defaults:
    root: Path = ROOT
    pods: Callable[[], Mapping[str, PodInfo]] | None = None


_DEFAULTS = _Defaults()


def use_defaults(*, root: Path, pods: Callable[[], Mapping[str, PodInfo]] | None) -> None:
    """Where `attribute` reads owners when its caller gives none: set once at start by the
    Kubernetes mode's broker (its proc root, which a simulated kubelet writes in tests, and
    its cache of the node's pods), so the broker's accounting needs no Kubernetes of its own."""
    _DEFAULTS.root, _DEFAULTS.pods = root, pods


def attribute(
    snapshot: GpuSnapshot,
    tenants: Mapping[TenantName, TenantSpec],
    *,
    root: Path | None = None,
    pods: Mapping[str, PodInfo] | None = None,
) -> tuple[Attributed, ...]:
    """Attribute every process of `snapshot`; the first tenant (in file order) that matches wins."""
    if root is None:
        root = _DEFAULTS.root
    if pods is None and _DEFAULTS.pods is not None:
        pods = _DEFAULTS.pods()
    result = []
    origins: dict[int, Origin] = {}
    for proc in snapshot.processes:
        if proc.pid not in origins:
            origins[proc.pid] = read_origin(proc.pid, root)
        origin = origins[proc.pid]
        pod = pods.get(origin.pod_uid) if pods is not None and origin.pod_uid else None
        owner = next(
            (
                name
                for name, spec in tenants.items()
                if spec.match is not None and matches(proc, origin, spec.match, root=root, pod=pod)
            ),
            None,
        )
        result.append(Attributed(proc, origin, owner, pod))
    return tuple(result)


def pod_addresses(want: PodMatch | None) -> tuple[str, ...]:
    """The IPs of the pods on this node that `want` names (Kubernetes mode): where a tenant's
    app-native methods reach it through `{pod_ip}`, whether or not it holds GPU memory now."""
    if want is None or _DEFAULTS.pods is None:
        return ()
    found = {
        info.ip
        for uid, info in _DEFAULTS.pods().items()
        if info.ip and _pod_matches(want, Origin(pod_uid=uid), info)
    }
    return tuple(sorted(found))
