"""The `gpuherd` command: a thin layer that parses arguments and hands over to the library."""

from __future__ import annotations

import gc
import sys
from typing import Annotated

import typer

from gpuherd import __version__
from gpuherd.cli import broker as broker_cmd
from gpuherd.cli import checkpoint as checkpoint_cmd
from gpuherd.cli import doctor as doctor_cmd
from gpuherd.cli import gpus as gpus_cmd
from gpuherd.cli import lint as lint_cmd
from gpuherd.cli import plan as plan_cmd
from gpuherd.cli import setup as setup_cmd
from gpuherd.cli import sim as sim_cmd
from gpuherd.cli import ui as ui_cmd
from gpuherd.cli import validate as validate_cmd

app = typer.Typer(
    name="gpuherd",
    help=(
        "Share a few NVIDIA GPUs between many services and jobs without out-of-memory crashes, "
        "silent CPU fallbacks or lost work.\n\n"
        "Exit codes: 0 ok; 1 the answer is no (a failure, findings); 2 bad arguments or input; "
        "3 no GPU backend here (try --backend sim); 4 no broker answers."
    ),
    no_args_is_help=True,
    add_completion=True,  # gpuherd --install-completion (bash, zsh, fish, PowerShell)
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"gpuherd {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Share a few NVIDIA GPUs between many services and jobs without losing work."""


app.command(name="doctor")(doctor_cmd.doctor)
app.command(name="gpus")(gpus_cmd.gpus)
app.command(name="lint")(lint_cmd.lint)
app.command(name="plan")(plan_cmd.plan)
app.command(name="validate")(validate_cmd.validate)
app.add_typer(sim_cmd.app, name="sim")
app.add_typer(setup_cmd.app, name="setup")
app.add_typer(checkpoint_cmd.app, name="checkpoint")
for _name in ("serve", "submit", "status", "jobs", "events", "cancel", "logs"):
    app.command(name=_name)(getattr(broker_cmd, _name))
app.command(name="ui")(ui_cmd.ui)


@app.command()
def demo(
    kubernetes: Annotated[
        bool,
        typer.Option(
            "--kubernetes",
            help="The nightly-render story on a simulated two-node k3s cluster: a broker per "
            "node scales Ollama to zero for a queued Job and back (needs gpuherd[simcluster]).",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="With --kubernetes: one JSON object, no narrative.")
    ] = False,
) -> None:
    """Run the demo: a render on a shared, simulated GPU; with --kubernetes, the nightly render
    on a simulated two-node k3s cluster."""
    if kubernetes:
        from gpuherd.demos.kube import run_kube_demo

        raise typer.Exit(run_kube_demo(as_json=as_json))
    if as_json:
        from gpuherd.cli.common import fail

        fail("--json goes with --kubernetes")
    from gpuherd.demo import run_demo

    raise typer.Exit(run_demo())


def _normalise_argv(argv: list[str]) -> list[str]:
    # `--watch` may stand alone (meaning every 2 s); the parser needs an explicit value.
    out = list(argv)
    if "gpus" not in out:
        return out
    for i, arg in enumerate(out):
        if arg in ("--watch", "-w") and (i + 1 == len(out) or out[i + 1].startswith("-")):
            out.insert(i + 1, "2")
            break
    return out


def main() -> None:
    # Imports are done: keep their objects out of every future collection (see cli/__init__).
    gc.freeze()
    gc.enable()
    sys.argv[1:] = _normalise_argv(sys.argv[1:])
    app()
