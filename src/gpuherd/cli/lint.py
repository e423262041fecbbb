"""`gpuherd lint`: GPU mistakes in Kubernetes manifests (and more sources as they land)."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, BinaryIO, cast

import typer

from gpuherd.cli.common import Exit, fail, finish_batch, start_batch, stdout, write_out

if TYPE_CHECKING:
    from gpuherd.lint.engine import LintOptions, LintResult


class Format(StrEnum):
    text = "text"
    json = "json"
    sarif = "sarif"


class FailOn(StrEnum):
    error = "error"
    warning = "warning"
    info = "info"


class Profile(StrEnum):
    generic = "generic"
    k3s = "k3s"
    microk8s = "microk8s"
    gke = "gke"
    eks = "eks"
    aks = "aks"


def _rule_set(text: str | None, known: set[str], flag: str) -> set[str] | None:
    if text is None:
        return None
    rules = {r.strip() for r in text.split(",") if r.strip()}
    unknown = sorted(rules - known)
    if unknown:
        fail(f"{flag}: unknown rule(s) {', '.join(unknown)}", hint="see gpuherd lint --list-rules")
    return rules


MAX_INPUT = 16 << 20  # bytes: no configuration file is near this


def _bounded(stream: BinaryIO, name: str) -> str:
    """At most MAX_INPUT bytes as text (undecodable bytes replaced, never a crash)."""
    data = stream.read(MAX_INPUT + 1)
    if len(data) > MAX_INPUT:
        fail(f"{name}: over {MAX_INPUT >> 20} MiB; not a configuration file", code=Exit.USAGE)
    return data.decode("utf-8", errors="replace")


def _read_sources(
    files: list[Path], *, stdin: bool
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(name, text) of every input, and (name, why) of files in a linted directory that could
    not be read: one finding each, not the end of the run. A path named on the command line
    that cannot be read is an error."""
    from gpuherd.lint.engine import discover

    sources: list[tuple[str, str]] = []
    if stdin:
        sources.append(("<stdin>", _bounded(sys.stdin.buffer, "<stdin>")))
    missing = [str(p) for p in files if not p.exists()]
    if missing:
        fail(f"no such file or directory: {', '.join(missing)}")
    named = set(files)
    unreadable: list[tuple[str, str]] = []
    for path in discover(files):
        if not path.is_file():  # a FIFO would block, /dev/zero never ends
            if path in named:
                fail(f"{path}: not a regular file", code=Exit.USAGE)
            unreadable.append((str(path), "not a regular file"))
            continue
        try:
            with path.open("rb") as f:
                sources.append((str(path), _bounded(f, str(path))))
        except OSError as exc:
            if path in named:
                fail(f"{path}: cannot read: {exc.strerror}")
            unreadable.append((str(path), f"cannot read: {exc.strerror or exc}"))
    return sources, unreadable


def _overrides(values: list[str], known: set[str]) -> dict[str, str]:
    """RULE=LEVEL pairs of --severity-override, checked."""
    found: dict[str, str] = {}
    for value in values:
        rule, sep, level = value.partition("=")
        rule, level = rule.strip(), level.strip().lower()
        if not sep or not rule:
            fail(f"--severity-override {value!r}: expected RULE=LEVEL, e.g. rolling-update=error")
        if rule not in known:
            fail(f"--severity-override: unknown rule {rule}", hint="see gpuherd lint --list-rules")
        if level not in ("error", "warning", "info"):
            fail(f"--severity-override {value!r}: LEVEL must be error, warning or info")
        found[rule] = level
    return found


def _describe(explain: str | None) -> None:
    """--list-rules (explain None) or --explain RULE."""
    from gpuherd.lint.docs import options_md
    from gpuherd.lint.report import rule_doc
    from gpuherd.lint.rules import RULES

    if explain is None:
        for rule_id, rule in RULES.items():
            stdout.print(f"{rule_id:<18} {rule.SEVERITY:<8} {rule_doc(rule)[0]}", markup=False)
        return
    if explain not in RULES:
        fail(f"no rule {explain!r}", hint="see gpuherd lint --list-rules")
    rule = RULES[explain]
    options = options_md(rule)
    stdout.print(
        f"{explain} ({rule.SEVERITY})\n\n{rule_doc(rule)[1]}"
        + (f"\n\n{options}" if options else ""),
        markup=False,
    )


def _check_cluster_flags(
    cluster: bool,
    paths: list[Path],
    *,
    kubeconfig: Path | None,
    context: str | None,
    namespace: str | None,
    all_namespaces: bool,
) -> None:
    """--cluster reads live objects or files are linted: one source per run, so a finding's
    location is always of one kind and cross-object evidence never mixes the two."""
    if cluster:
        if paths:
            fail(
                "--cluster lints the live objects, not files: run `gpuherd lint PATH...` separately"
            )
        if namespace is not None and all_namespaces:
            fail("--namespace and --all-namespaces: choose one")
        return
    given = [
        flag
        for flag, value in (
            ("--kubeconfig", kubeconfig),
            ("--context", context),
            ("--namespace", namespace),
            ("--all-namespaces", all_namespaces or None),
        )
        if value is not None
    ]
    if given:
        fail(f"{', '.join(given)} only with --cluster")


def _lint_cluster(
    options: LintOptions,
    *,
    kubeconfig: Path | None,
    context: str | None,
    namespace: str | None,
) -> LintResult:
    """The live objects through the rules; JSON gets a `cluster` section saying what was read."""
    from gpuherd.cli.cluster import read_or_exit
    from gpuherd.lint.cluster import lint_objects

    snapshot = read_or_exit(
        "--cluster", kubeconfig=kubeconfig, context=context, namespace=namespace
    )
    start_batch()
    result = lint_objects(snapshot.objects, options)
    result.extra = {
        "cluster": {
            "server": snapshot.server,
            "namespace": namespace,
            "namespaces_read_one_by_one": snapshot.namespaces,
            "read": snapshot.read,
            "skipped": [
                {"resource": s.resource, "namespace": s.namespace, "reason": s.reason}
                for s in snapshot.skipped
            ],
        }
    }
    return result


def lint(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Files or directories (recursive: .yaml .yml .json .toml .tf); "
            "- reads standard input.",
            show_default=False,
        ),
    ] = None,
    cluster: Annotated[
        bool,
        typer.Option(
            "--cluster",
            help="Lint the live objects of a Kubernetes cluster instead of files: its "
            "workloads, judged with its Nodes, RuntimeClasses, volumes and sharing configs.",
        ),
    ] = False,
    kubeconfig: Annotated[
        Path | None,
        typer.Option(
            "--kubeconfig",
            help="With --cluster: the kubeconfig (default: $KUBECONFIG, then ~/.kube/config; "
            "in a pod, its service account).",
            show_default=False,
        ),
    ] = None,
    context: Annotated[
        str | None,
        typer.Option(
            "--context",
            help="With --cluster: the kubeconfig context (default: its current one).",
            show_default=False,
        ),
    ] = None,
    namespace: Annotated[
        str | None,
        typer.Option(
            "--namespace",
            "-n",
            help="With --cluster: only this namespace's workloads (cluster-wide Nodes, "
            "RuntimeClasses and the like are still read).",
            show_default=False,
        ),
    ] = None,
    all_namespaces: Annotated[
        bool,
        typer.Option(
            "--all-namespaces",
            "-A",
            help="With --cluster: every namespace the credentials may list (the default).",
        ),
    ] = False,
    fmt: Annotated[
        Format, typer.Option("--format", "-f", help="text, json or sarif.")
    ] = Format.text,
    fail_on: Annotated[
        FailOn, typer.Option("--fail-on", help="Exit 1 when a finding is at least this severe.")
    ] = FailOn.warning,
    profile: Annotated[
        Profile,
        typer.Option(
            "--profile", help="Cluster flavour: decides default runtime and GPU node taints."
        ),
    ] = Profile.generic,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help=".gpuherd-lint.yaml to use (default: found upward from the first path).",
            show_default=False,
        ),
    ] = None,
    select: Annotated[
        str | None, typer.Option("--select", help="Only these rules (comma list).")
    ] = None,
    ignore: Annotated[
        str | None, typer.Option("--ignore", help="Skip these rules (comma list).")
    ] = None,
    max_gpus_per_node: Annotated[
        int | None,
        typer.Option(
            "--max-gpus-per-node",
            min=1,
            help="Largest GPU count of any node, when no Node objects are in the input.",
        ),
    ] = None,
    severity_override: Annotated[
        list[str] | None,
        typer.Option(
            "--severity-override",
            metavar="RULE=LEVEL",
            help="Report every finding of RULE as LEVEL (error, warning, info); repeatable. "
            "Wins over `rules: {RULE: {severity: ...}}` in .gpuherd-lint.yaml.",
            show_default=False,
        ),
    ] = None,
    show_statistics: Annotated[
        bool,
        typer.Option(
            "--statistics",
            help="Print a table of finding counts per rule instead of the findings "
            "(JSON with --format json). The exit code is the same.",
        ),
    ] = False,
    list_rules: Annotated[
        bool, typer.Option("--list-rules", help="List the rules and exit.")
    ] = False,
    explain: Annotated[
        str | None, typer.Option("--explain", help="Print a rule's documentation.")
    ] = None,
) -> None:
    """Find GPU mistakes in configs, with exact line numbers; text, JSON or SARIF output."""
    from gpuherd.lint.config import LintConfigError, find_config, load_lint_config
    from gpuherd.lint.engine import SEVERITY_RANK, LintOptions, lint_sources
    from gpuherd.lint.model import Finding, Severity
    from gpuherd.lint.report import (
        as_json,
        as_sarif,
        as_statistics_json,
        as_statistics_text,
        as_text,
    )
    from gpuherd.lint.rules import RULES

    known = set(RULES)
    if list_rules or explain is not None:
        _describe(explain)
        return
    _check_cluster_flags(
        cluster,
        paths or [],
        kubeconfig=kubeconfig,
        context=context,
        namespace=namespace,
        all_namespaces=all_namespaces,
    )
    if not paths and not cluster:
        fail("give at least one file or directory (or - for standard input), or --cluster")
    if show_statistics and fmt == Format.sarif:
        fail("--statistics prints text or JSON, not SARIF")
    overrides = _overrides(severity_override or [], known)
    files = [p for p in paths or [] if str(p) != "-"]
    sources: list[tuple[str, str]] = []
    unreadable: list[tuple[str, str]] = []
    if not cluster:
        sources, unreadable = _read_sources(files, stdin=len(files) != len(paths or []))
    config_path = config or (find_config(files[0]) if files else find_config(Path.cwd()))
    try:
        settings = load_lint_config(config_path, RULES) if config_path else None
    except LintConfigError as exc:
        fail(str(exc))
    chosen = _rule_set(select, known, "--select")
    options = LintOptions(
        select=chosen if chosen is not None else (settings.select if settings else None),
        ignore=(_rule_set(ignore, known, "--ignore") or set())
        | (settings.ignore if settings else set()),
        profile=profile.value,
        max_gpus_per_node=max_gpus_per_node,
        rule_options=settings.rule_options if settings else {},
        severity_overrides={
            **(settings.severities if settings else {}),
            **cast(dict[str, Severity], overrides),
        },
    )
    if cluster:
        result = _lint_cluster(options, kubeconfig=kubeconfig, context=context, namespace=namespace)
    else:
        start_batch()
        result = lint_sources(sources, options)
    result.files += len(unreadable)
    result.findings.extend(
        Finding(
            rule="unreadable",
            severity="error",
            file=name,
            line=1,
            column=1,
            object="",
            message=f"{why}, so it was not checked",
            fix="make it readable, or leave it out of the paths",
        )
        for name, why in unreadable
    )
    if show_statistics:
        render = as_statistics_json if fmt == Format.json else as_statistics_text
    else:
        render = {Format.text: as_text, Format.json: as_json, Format.sarif: as_sarif}[fmt]
    write_out(render(result))
    threshold = SEVERITY_RANK[fail_on.value]
    failed = any(SEVERITY_RANK[f.severity] >= threshold for f in result.findings)
    finish_batch(int(Exit.FAILED if failed else Exit.OK))
