"""One setup run: decide the plans for the chosen engines, then show, apply or undo them."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from gpuherd.runtimecfg.base import Root
from gpuherd.setup import detect, files
from gpuherd.setup.containerd import plan_containerd
from gpuherd.setup.docker import plan_docker
from gpuherd.setup.k3s import plan_k3s
from gpuherd.setup.model import Engine, Outcome, Plan, Refusal
from gpuherd.setup.toolkit import plan_toolkit

MICROK8S_TEMPLATE = "/var/snap/microk8s/current/args/containerd-template.toml"


@dataclass(frozen=True, slots=True)
class Options:
    root: Path = Path("/")
    engine: str = "auto"
    set_default: bool = False
    cdi: bool = False
    deny_envvar: bool = False


def make_plans(options: Options) -> list[Plan]:
    """Every plan for this run; raises SetupInputError on a file it cannot parse."""
    root = Root(options.root)
    managed = detect.operator_evidence(root)
    if managed:
        plan = Plan("gpu-operator", evidence=managed)
        plan.notes.append(
            "the NVIDIA GPU Operator's toolkit DaemonSet owns the runtime wiring here; gpuherd "
            "changes nothing (its own settings: the ClusterPolicy's toolkit.env)"
        )
        if options.set_default:
            plan.refusal = Refusal(
                "the GPU Operator manages the default runtime on this host",
                "set CONTAINERD_SET_AS_DEFAULT in the ClusterPolicy's toolkit.env instead",
            )
        return [plan]
    engines: list[Engine] = (
        detect.detect_engines(root) if options.engine == "auto" else [options.engine]  # type: ignore[list-item]
    )
    if not engines:
        plan = Plan("auto")
        plan.refusal = Refusal(
            "no container engine found (Docker, containerd, k3s, RKE2, MicroK8s)",
            "install one, or name it with --engine",
        )
        return [plan]
    binary = detect.toolkit_binary(root)
    if binary is None:
        distro = detect.read_os_release(root)
        plan = Plan("toolkit")
        plan.refusal = Refusal(
            "NVIDIA Container Toolkit is not installed (no nvidia-container-runtime on PATH)",
            f"on {distro.pretty}: "
            + " && ".join(detect.install_steps(distro))
            + "; then run gpuherd setup runtime again",
        )
        return [plan]
    plans = [plan_toolkit(root, deny_envvar=options.deny_envvar)]
    for engine in engines:
        plans.append(_plan_engine(root, engine, binary, options))
    return plans


def _plan_engine(root: Root, engine: Engine, binary: str, options: Options) -> Plan:
    if engine == "docker":
        return plan_docker(root, binary, set_default=options.set_default, cdi=options.cdi)
    if engine == "containerd":
        return plan_containerd(root, binary, set_default=options.set_default, cdi=options.cdi)
    if engine == "microk8s":
        return plan_containerd(
            root,
            binary,
            set_default=options.set_default,
            cdi=options.cdi,
            target="microk8s",
            config=MICROK8S_TEMPLATE,
            restart=["snap", "restart", "microk8s.daemon-containerd"],
            effective_config=["microk8s", "ctr", "plugins", "ls"],
        )
    return plan_k3s(root, engine, binary, set_default=options.set_default)


def status_of(plans: list[Plan], *, dry_run: bool) -> Outcome:
    if any(p.refusal for p in plans):
        return Outcome("refused", tuple(plans), {})
    if any(p.changes for p in plans):
        return Outcome("would-change" if dry_run else "changed", tuple(plans), {})
    return Outcome("already-wired", tuple(plans), {})


def apply(options: Options, plans: list[Plan], *, now: datetime | None = None) -> Outcome:
    """Write every change of every plan (no refusal may be pending): backups, then files."""
    outcome = status_of(plans, dry_run=False)
    if outcome.status != "changed":
        return outcome
    changes = [c for p in plans for c in p.changes]
    applied = files.apply_changes(Root(options.root), changes, now=now)
    return Outcome("changed", tuple(plans), applied.backups, applied.manifest)


def restart_commands(plans: list[Plan]) -> list[list[str]]:
    seen: list[list[str]] = []
    for plan in plans:
        for command in plan.commands:
            if command not in seen:
                seen.append(command)
    return seen


def run_commands(commands: list[list[str]]) -> list[tuple[list[str], int, str]]:
    """Run restarts on the live host (only with --restart): argv lists, never a shell."""
    results = []
    for command in commands:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
            results.append((command, done.returncode, (done.stderr or done.stdout).strip()))
        except (OSError, subprocess.TimeoutExpired) as exc:
            results.append((command, 127, str(exc)))
    return results
