"""What every rule shares: the inputs it sees and helpers for GPU resources and findings."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from gpuherd.lint.model import Problem, Severity
from gpuherd.lint.scope import Projects
from gpuherd.lint.sources.compose import Service
from gpuherd.lint.sources.device_plugin import PluginConfig
from gpuherd.lint.sources.ecs import AgentConfig, TaskDef
from gpuherd.lint.sources.k8s import Container, K8sObject, is_gpu_resource, parse_count
from gpuherd.lint.sources.runtime import RuntimeFile
from gpuherd.runtimecfg.base import Judgement
from gpuherd.yamlpos import Pos

__all__ = [
    "LintContext",
    "config_finding",
    "finding",
    "finding_at",
    "gpu_request",
    "is_gpu_resource",
    "judged",
    "node_gpu_count",
    "parse_count",
    "pod_gpus",
]


@dataclass
class LintContext:
    """Every parsed object of one run, so rules can look across files (Nodes, PVs, configs)."""

    objects: list[K8sObject] = field(default_factory=list)
    plugin_configs: list[PluginConfig] = field(default_factory=list)
    compose: list[Service] = field(default_factory=list)
    ecs_tasks: list[TaskDef] = field(default_factory=list)
    ecs_agents: list[AgentConfig] = field(default_factory=list)
    runtime_files: list[RuntimeFile] = field(default_factory=list)
    gpu_ami_files: list[str] = field(default_factory=list)  # .tf files naming an ECS GPU AMI
    profile: str = "generic"
    max_gpus_per_node: int | None = None
    projects: Projects = field(default_factory=lambda: Projects(()))
    _by_kind: dict[str, list[K8sObject]] = field(default_factory=dict, repr=False)

    def of_kind(self, kind: str) -> list[K8sObject]:
        """Objects of one kind (Node, RuntimeClass...); rules run after every input is loaded,
        so the answer is computed once per kind instead of once per pod."""
        if kind not in self._by_kind:
            self._by_kind[kind] = [o for o in self.objects if o.kind == kind]
        return self._by_kind[kind]

    def same_project(self, a: str, b: str) -> bool:
        """Whether evidence in file `b` may judge something in file `a` (see gpuherd.lint.scope)."""
        return self.projects.same(a, b)


def gpu_request(container: Container) -> int:
    """GPUs (or shares) a container asks for: its limits, where Kubernetes reads them."""
    return container.gpus


def pod_gpus(obj: K8sObject) -> int:
    """GPUs a pod needs at once: its containers' sum, or its largest init container."""
    return obj.gpus


def node_gpu_count(node: K8sObject) -> int:
    status = node.data.get("status")
    status = status if isinstance(status, dict) else {}
    best = 0
    for section in ("capacity", "allocatable"):
        values = status.get(section)
        for name, value in values.items() if isinstance(values, dict) else []:
            if is_gpu_resource(str(name)):
                best = max(best, parse_count(value) or 0)
    return best


def finding_at(
    file: str,
    pos: Pos,
    *,
    label: str,
    message: str,
    fix: str,
    severity: Severity | None = None,
) -> Problem:
    """A problem on anything that is not a Kubernetes object (a file, a service, a config)."""
    return Problem(
        severity=severity,
        file=file,
        line=pos.line,
        column=pos.column,
        object=label,
        message=message,
        fix=fix,
    )


def judged(
    ctx: LintContext,
    kind: str,
    judge: Callable[[RuntimeFile], Iterable[Judgement]],
) -> Iterator[Problem]:
    """Problems from a shared runtime-config judge, on every input file of `kind`."""
    for rf in ctx.runtime_files:
        if rf.kind != kind:
            continue
        for j in judge(rf):
            yield finding_at(
                rf.file,
                rf.pos(j.key),
                label=rf.file.rsplit("/", 1)[-1],
                message=j.message,
                fix=j.fix,
                severity=j.severity,
            )


def config_finding(
    config: PluginConfig,
    pos: Pos,
    message: str,
    fix: str,
    *,
    severity: Severity | None = None,
) -> Problem:
    return finding_at(
        config.file, pos, label=config.label, message=message, fix=fix, severity=severity
    )


def finding(
    subject: K8sObject | Container,
    pos: Pos,
    message: str,
    fix: str,
    *,
    severity: Severity | None = None,
) -> Problem:
    obj = subject.obj if isinstance(subject, Container) else subject
    return Problem(
        severity=severity,
        file=obj.doc.source,
        line=pos.line,
        column=pos.column,
        object=subject.label,
        message=message,
        fix=fix,
    )
