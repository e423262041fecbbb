"""Run the rules over a set of input files and return sorted, de-suppressed findings."""

from __future__ import annotations

import gc
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from gpuherd.lint.inputs import PARSE_ERROR, UNKNOWN_INPUT, load
from gpuherd.lint.model import SEVERITY_RANK, Finding, Problem, Severity
from gpuherd.lint.rules import RULES
from gpuherd.lint.rules.api import OptionValue, Rule, resolve_options
from gpuherd.lint.rules.base import LintContext
from gpuherd.lint.scope import Projects

EXTENSIONS = (".yaml", ".yml", ".json", ".toml", ".tf")
# Found in directories too: the ECS agent's config and EC2 user-data scripts that write it.
EXTRA_NAMES = ("ecs.config", "user-data", "user_data", "userdata")
IGNORE_ANNOTATION = "gpuherd.io/ignore"
_IGNORE_COMMENT = re.compile(r"#\s*gpuherd:\s*ignore\[([\w,\s-]+)\]")
__all__ = [
    "PARSE_ERROR",
    "SEVERITY_RANK",
    "UNKNOWN_INPUT",
    "LintOptions",
    "LintResult",
    "discover",
    "lint_sources",
]


@dataclass
class LintOptions:
    select: set[str] | None = None  # None: every rule
    ignore: set[str] = field(default_factory=set)
    profile: str = "generic"
    max_gpus_per_node: int | None = None
    # rule id -> {option: value} (from `.gpuherd-lint.yaml` `rules:`), validated by the caller
    rule_options: dict[str, dict[str, OptionValue]] = field(default_factory=dict)
    # rule id -> severity every finding of that rule gets (`--severity-override RULE=LEVEL`)
    severity_overrides: dict[str, Severity] = field(default_factory=dict)


@dataclass
class LintResult:
    files: int
    findings: list[Finding]
    unit: str = "file"  # what `files` counts, in the text summary ("object" for --cluster)
    extra: dict[str, object] = field(default_factory=dict)  # more top-level keys for JSON


def discover(paths: Iterable[Path]) -> list[Path]:
    """Files named directly, and files with a known extension below named directories."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and (
                    p.suffix in EXTENSIONS
                    or p.name.startswith(EXTRA_NAMES)
                    or p.name.endswith(".toml.tmpl")
                )
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        else:
            found.append(path)
    return found


def _comment_ignores(text: str) -> dict[int, set[str]]:
    """line -> rules ignored by a `# gpuherd: ignore[rule,...]` comment on that line."""
    ignores: dict[int, set[str]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        match = _IGNORE_COMMENT.search(line)
        if match:
            ignores[number] = {r.strip() for r in match.group(1).split(",") if r.strip()}
    return ignores


def _annotation_ignores(ctx: LintContext) -> dict[tuple[str, str], set[str]]:
    """(file, object label) -> rules its `gpuherd.io/ignore` annotation turns off."""
    return {
        (obj.doc.source, obj.label): {
            r.strip() for r in str(obj.annotations().get(IGNORE_ANNOTATION, "")).split(",")
        }
        for obj in ctx.objects
        if IGNORE_ANNOTATION in obj.annotations()
    }


def _suppressed(
    found: Finding,
    annotations: dict[tuple[str, str], set[str]],
    comments: dict[str, dict[int, set[str]]],
) -> bool:
    if found.rule in annotations.get((found.file, found.object.split(" ")[0]), set()):
        return True
    marks = comments.get(found.file, {})
    return found.rule in marks.get(found.line, set()) | marks.get(found.line - 1, set())


INTERNAL_ERROR = "internal-error"


def _stamp(rule: Rule, problem: Problem, override: Severity | None) -> Finding:
    return Finding(
        rule=rule.ID,
        severity=override or problem.severity or rule.SEVERITY,
        file=problem.file,
        line=problem.line,
        column=problem.column,
        object=problem.object,
        message=problem.message,
        fix=problem.fix,
    )


def _run(rule: Rule, ctx: LintContext, options: LintOptions) -> list[Finding]:
    """A rule's findings; a bug in a rule becomes one finding, never a traceback for the user."""
    settings = resolve_options(rule, options.rule_options.get(rule.ID))
    override = options.severity_overrides.get(rule.ID)
    try:
        return [_stamp(rule, p, override) for p in rule.check(ctx, settings)]
    except Exception as exc:
        return [
            Finding(
                rule=INTERNAL_ERROR,
                severity="error",
                file="<gpuherd>",
                line=1,
                column=1,
                object=rule.ID,
                message=f"rule {rule.ID} failed: {type(exc).__name__}: {exc}",
                fix="please report this with the input that caused it",
            )
        ]


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Parsed manifests are millions of small acyclic objects; the cyclic collector would walk
    all of them again and again while they are built (measured: a third of the run time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def lint_sources(sources: list[tuple[str, str]], options: LintOptions) -> LintResult:
    """Lint (name, text) pairs; a file that does not parse is a finding, the others go on."""
    with _collector_paused():
        return _lint(sources, options)


def _lint(sources: list[tuple[str, str]], options: LintOptions) -> LintResult:
    ctx = LintContext(
        profile=options.profile,
        max_gpus_per_node=options.max_gpus_per_node,
        projects=Projects(source for source, _text in sources),
    )
    findings: list[Finding] = []
    comments = {source: _comment_ignores(text) for source, text in sources}
    for source, text in sources:
        problem = load(source, text, ctx)
        if problem is not None:
            findings.append(problem)
    annotations = _annotation_ignores(ctx)
    for rule_id, rule in RULES.items():
        if (options.select is not None and rule_id not in options.select) or (
            rule_id in options.ignore
        ):
            continue
        findings += [
            f for f in _run(rule, ctx, options) if not _suppressed(f, annotations, comments)
        ]
    return LintResult(len(sources), sorted(findings, key=Finding.sort_key))
