"""Run the rules over a set of input files and return sorted, de-suppressed findings."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from gpuherd.lint.model import SEVERITY_RANK, Finding
from gpuherd.lint.rules import RULES
from gpuherd.lint.rules.base import LintContext
from gpuherd.lint.sources.compose import compose_services
from gpuherd.lint.sources.device_plugin import embedded, standalone
from gpuherd.lint.sources.ecs import agent_config, task_definitions
from gpuherd.lint.sources.k8s import k8s_objects
from gpuherd.yamlpos import YamlError, load_documents

EXTENSIONS = (".yaml", ".yml", ".json", ".toml", ".tf")
# Found in directories too: the ECS agent's config and EC2 user-data scripts that write it.
EXTRA_NAMES = ("ecs.config", "user-data", "user_data", "userdata")
IGNORE_ANNOTATION = "gpuherd.io/ignore"
_IGNORE_COMMENT = re.compile(r"#\s*gpuherd:\s*ignore\[([\w,\s-]+)\]")
PARSE_ERROR = "parse-error"
__all__ = ["SEVERITY_RANK", "LintOptions", "LintResult", "discover", "lint_sources"]


@dataclass
class LintOptions:
    select: set[str] | None = None  # None: every rule
    ignore: set[str] = field(default_factory=set)
    profile: str = "generic"
    max_gpus_per_node: int | None = None


@dataclass
class LintResult:
    files: int
    findings: list[Finding]


def discover(paths: Iterable[Path]) -> list[Path]:
    """Files named directly, and files with a known extension below named directories."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and (p.suffix in EXTENSIONS or p.name.startswith(EXTRA_NAMES))
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


def lint_sources(sources: list[tuple[str, str]], options: LintOptions) -> LintResult:
    """Lint (name, text) pairs; a file that does not parse is a finding, the others go on."""
    ctx = LintContext(profile=options.profile, max_gpus_per_node=options.max_gpus_per_node)
    findings: list[Finding] = []
    comment_ignores: dict[str, dict[int, set[str]]] = {}
    for source, text in sources:
        comment_ignores[source] = _comment_ignores(text)
        agent = agent_config(source, text)
        if agent is not None:
            ctx.ecs_agents.append(agent)
            continue
        if source.endswith((".toml", ".tf")):
            continue  # runtime configs and Terraform come with their own sources
        try:
            docs = load_documents(text, source=source)
        except YamlError as exc:
            findings.append(
                Finding(
                    rule=PARSE_ERROR,
                    severity="error",
                    file=source,
                    line=exc.pos.line,
                    column=exc.pos.column,
                    object="",
                    message=f"does not parse: {exc.message}",
                    fix="fix the YAML/JSON syntax",
                )
            )
            continue
        lines = text.splitlines()
        for doc in docs:
            config = standalone(doc)
            if config is not None:
                ctx.plugin_configs.append(config)
                continue
            ctx.compose.extend(compose_services(doc))
            ctx.ecs_tasks.extend(task_definitions(doc))
            for obj in k8s_objects(doc):
                ctx.objects.append(obj)
                ctx.plugin_configs.extend(embedded(obj, lines))
    annotation_ignores = {
        (obj.doc.source, obj.label): {
            r.strip() for r in str(obj.annotations().get(IGNORE_ANNOTATION, "")).split(",")
        }
        for obj in ctx.objects
    }
    for rule_id, rule in RULES.items():
        if (options.select is not None and rule_id not in options.select) or (
            rule_id in options.ignore
        ):
            continue
        for found in rule.check(ctx):
            owner = (found.file, found.object.split(" ")[0])
            if found.rule in annotation_ignores.get(owner, ()):
                continue
            marks = comment_ignores.get(found.file, {})
            if found.rule in marks.get(found.line, set()) | marks.get(found.line - 1, set()):
                continue
            findings.append(found)
    return LintResult(len(sources), sorted(findings, key=Finding.sort_key))
