"""`gpuherd setup runtime`: wire the NVIDIA runtime into the container engines, safely."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gpuherd.cli.common import Exit, fail, stdout, write_out

if TYPE_CHECKING:
    from collections.abc import Callable

    from gpuherd.doctor.model import Check
    from gpuherd.setup.model import Change, Outcome, Plan
    from gpuherd.setup.run import Options

    Diff = Callable[[Change], str]
    Ran = list[tuple[list[str], int, str]]

app = typer.Typer(
    help="Make this host's container runtimes give containers the GPU (Docker, containerd, "
    "k3s, RKE2, MicroK8s).",
    no_args_is_help=True,
)


class EngineChoice(StrEnum):
    auto = "auto"
    docker = "docker"
    containerd = "containerd"
    k3s = "k3s"
    rke2 = "rke2"
    microk8s = "microk8s"


@app.command()
def runtime(
    engine: Annotated[
        EngineChoice,
        typer.Option(
            "--engine",
            help="Which engine to wire; auto: every one found (/etc/docker, "
            "/etc/containerd/config.toml, /var/lib/rancher/{k3s,rke2}, /var/snap/microk8s).",
        ),
    ] = EngineChoice.auto,
    set_default: Annotated[
        bool,
        typer.Option(
            "--set-default",
            help="Also make nvidia the default runtime (without it an existing default is kept: "
            "every container, GPU or not, would otherwise go through the nvidia runtime).",
        ),
    ] = False,
    cdi: Annotated[
        bool,
        typer.Option(
            "--cdi",
            help="Also turn on CDI device injection (Docker features.cdi, containerd "
            "enable_cdi); generate the spec with `nvidia-ctk cdi generate`.",
        ),
    ] = False,
    deny_envvar: Annotated[
        bool,
        typer.Option(
            "--deny-envvar-devices",
            help="Set accept-nvidia-visible-devices-envvar-when-unprivileged = false (and "
            "volume-mount device lists) in the toolkit's config.toml: unprivileged containers "
            "can then no longer take GPUs by setting NVIDIA_VISIBLE_DEVICES.",
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print the unified diff of every file and the commands; change nothing.",
        ),
    ] = False,
    undo: Annotated[
        bool,
        typer.Option(
            "--undo",
            help="Put back the files of the newest run from their backups (created files are "
            "removed); refused when a file changed since.",
        ),
    ] = False,
    restart: Annotated[
        bool,
        typer.Option(
            "--restart",
            help="Run the restarts the changes need (systemctl/snap). Without it they are only "
            "printed. Live system only.",
        ),
    ] = False,
    install_toolkit: Annotated[
        bool,
        typer.Option(
            "--install-toolkit",
            help="When the toolkit is missing, install it with the package manager, only where "
            "its package source is already configured. Live system only.",
        ),
    ] = False,
    root: Annotated[
        Path,
        typer.Option(
            "--root",
            help="Work on the files under DIR instead of / (a captured tree, as doctor --root).",
        ),
    ] = Path("/"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Register the nvidia runtime: structural edits, a diff first, backups, --undo.

    Exit 0: done, or nothing to do; 1: refused (the reason and the fix are printed) or the
    doctor's runtime checks fail afterwards; 2: bad usage or a config file that does not parse
    (nothing is changed).
    """
    from gpuherd.setup.model import SetupInputError
    from gpuherd.setup.run import Options

    if not root.is_dir():
        fail(f"--root {root}: not a directory")
    live = root.resolve() == Path("/")
    if undo and (set_default or cdi or deny_envvar or engine is not EngineChoice.auto):
        fail("--undo takes no other change options", hint="gpuherd setup runtime --undo")
    if undo and dry_run:
        fail("--undo cannot be combined with --dry-run")
    if (restart or install_toolkit) and not live:
        fail("--restart and --install-toolkit act on the live system; leave out --root")
    options = Options(
        root=root.resolve(),
        engine=engine.value,
        set_default=set_default,
        cdi=cdi,
        deny_envvar=deny_envvar,
    )
    try:
        if undo:
            _undo(options, as_json=as_json)
        if install_toolkit and not dry_run:
            _install_toolkit(options)
        _run(options, dry_run=dry_run, restart=restart, as_json=as_json)
    except SetupInputError as exc:
        fail(f"{exc}; nothing was changed", hint="fix the file, then run again")


def _run(options: Options, *, dry_run: bool, restart: bool, as_json: bool) -> None:
    from gpuherd.doctor.run import run_runtime_checks
    from gpuherd.setup.files import ChangedMeanwhile, unified_diff
    from gpuherd.setup.run import apply, make_plans, restart_commands, run_commands, status_of

    plans = make_plans(options)
    try:
        outcome = status_of(plans, dry_run=True) if dry_run else apply(options, plans)
    except ChangedMeanwhile as exc:
        fail(str(exc), code=Exit.FAILED)
    except OSError as exc:
        fail(f"cannot write: {exc}", hint="run as root (sudo)", code=Exit.FAILED)
    checks: list[Check] = []
    if not dry_run and outcome.status in ("changed", "already-wired"):
        checks = run_runtime_checks(root=options.root)
    ran: Ran = []
    if restart and outcome.status == "changed":
        ran = run_commands(restart_commands(plans))
    failed_checks = [c for c in checks if c.status == "fail"]
    if as_json:
        write_out(json.dumps(_as_dict(outcome, checks, ran, dry_run, unified_diff), indent=2))
    else:
        _print(outcome, checks, ran, dry_run, unified_diff)
    bad = outcome.status == "refused" or failed_checks or any(rc for _c, rc, _m in ran)
    raise typer.Exit(int(Exit.FAILED if bad else Exit.OK))


def _install_toolkit(options: Options) -> None:
    import subprocess

    from gpuherd.runtimecfg.base import Root
    from gpuherd.setup import detect

    view = Root(options.root)
    if detect.toolkit_binary(view) is not None:
        return
    distro = detect.read_os_release(view)
    command = detect.install_command(view, distro)
    if command is None:
        fail(
            f"no package source for nvidia-container-toolkit is configured on {distro.pretty}; "
            "gpuherd installs only from a configured source",
            hint=" && ".join(detect.install_steps(distro)),
            code=Exit.FAILED,
        )
    stdout.print(f"running: {' '.join(command)}", markup=False)
    done = subprocess.run(command, check=False, timeout=900)
    if done.returncode != 0:
        fail(f"{' '.join(command)} exited {done.returncode}", code=Exit.FAILED)


def _undo(options: Options, *, as_json: bool) -> None:
    from gpuherd.runtimecfg.base import Root
    from gpuherd.setup.files import UndoRefused, undo_last

    try:
        restored, manifest = undo_last(Root(options.root))
    except UndoRefused as exc:
        fail(
            str(exc), hint="put the file back by hand from its .gpuherd-* backup", code=Exit.FAILED
        )
    if as_json:
        status = "undone" if manifest else "nothing-to-undo"
        files = [{"path": p, "restored_from": b} for p, b in restored]
        write_out(json.dumps({"version": 1, "status": status, "files": files}, indent=2))
    elif manifest is None:
        stdout.print("nothing to undo: no setup run recorded", markup=False)
    else:
        for path, backup in restored:
            what = f"restored from {backup}" if backup else "removed (gpuherd created it)"
            stdout.print(f"{path}: {what}", markup=False)
        stdout.print("undone; restart the engines for it to take effect", markup=False)
    raise typer.Exit(int(Exit.OK))


def _plan_dict(plan: Plan, outcome: Outcome, diff: Diff) -> dict[str, Any]:
    return {
        "target": plan.target,
        "wired": plan.wired,
        "changes": [
            {
                "path": c.path,
                "action": "create" if c.before is None else "remove" if c.after is None else "edit",
                "why": c.why,
                "backup": outcome.backups.get(c.path),
                "diff": diff(c),
            }
            for c in plan.changes
        ],
        "commands": plan.commands,
        "evidence": plan.evidence,
        "notes": plan.notes,
        "refusal": None
        if plan.refusal is None
        else {"reason": plan.refusal.reason, "fix": plan.refusal.fix},
        "effective_config": plan.effective_config,
    }


def _as_dict(
    outcome: Outcome, checks: list[Check], ran: Ran, dry_run: bool, diff: Diff
) -> dict[str, Any]:
    return {
        "version": 1,
        "status": outcome.status,
        "dry_run": dry_run,
        "manifest": outcome.manifest,
        "plans": [_plan_dict(p, outcome, diff) for p in outcome.plans],
        "verify": [
            {"id": c.id, "status": c.status, "message": c.message, "fix": c.fix} for c in checks
        ],
        "ran": [{"command": c, "exit": rc, "output": out} for c, rc, out in ran],
    }


def _print(outcome: Outcome, checks: list[Check], ran: Ran, dry_run: bool, diff: Diff) -> None:
    from rich.text import Text

    for plan in outcome.plans:
        for change in plan.changes:
            stdout.print(Text(diff(change)), end="")
    for plan in outcome.plans:
        _print_plan(plan, outcome, dry_run)
    for command, rc, output in ran:
        style = "green" if rc == 0 else "bold red"
        stdout.print(Text(f"ran {' '.join(command)}: exit {rc} {output}".rstrip(), style=style))
    if checks:
        stdout.print("verify (doctor runtime checks):", markup=False)
        for check in checks:
            stdout.print(f"  {check.status:<4}  {check.id}: {check.message}", markup=False)
    if dry_run:
        stdout.print("dry run: nothing was changed", markup=False)
    elif outcome.manifest:
        stdout.print(
            f"recorded in {outcome.manifest}; gpuherd setup runtime --undo puts it back",
            markup=False,
        )


def _print_plan(plan: Plan, outcome: Outcome, dry_run: bool) -> None:
    from rich.text import Text

    head = Text(f"{plan.target}: ", style="bold")
    if plan.refusal is not None:
        stdout.print(head + Text(f"refused: {plan.refusal.reason}", style="bold red"))
        stdout.print(Text(f"  fix: {plan.refusal.fix}", style="cyan"))
    elif plan.changes:
        verb = "would change" if dry_run else "changed"
        for change in plan.changes:
            stdout.print(head + Text(f"{verb} {change.path}: {change.why}"))
            if outcome.backups.get(change.path):
                stdout.print(f"  backup: {outcome.backups[change.path]}", markup=False)
            elif change.path in outcome.backups:
                stdout.print("  created (--undo removes it)", markup=False)
    elif plan.commands:
        stdout.print(head + Text("files already wired; the engine has not picked it up yet"))
    elif plan.target == "toolkit":
        stdout.print(head + Text("config.toml fine, nothing to change", style="green"))
    else:
        stdout.print(head + Text("already wired", style="green"))
    lines = [f"  evidence: {item}" for item in plan.evidence]
    lines += [f"  note: {note}" for note in plan.notes]
    prefix = "would need" if dry_run else "needs"
    lines += [f"  {prefix}: {' '.join(command)}" for command in plan.commands]
    if plan.effective_config and (plan.changes or plan.commands):
        lines.append(f"  check the effective config: {' '.join(plan.effective_config)}")
    for line in lines:
        stdout.print(line, markup=False)
