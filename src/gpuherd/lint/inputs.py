"""Input kinds: a registry of (recognise, parse) pairs, tried in order, so a new kind is one entry.

`recognise(name, text)` decides from the file name (and, for agent configs, a telling line);
`parse(name, text, ctx)` adds what it read to the context and returns a finding when the file
does not parse. A file no kind recognises by name is sniffed: YAML/JSON first, then TOML; what
is neither is reported as an unknown input type instead of a misleading syntax error.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass

import yaml

from gpuherd.lint.model import Finding
from gpuherd.lint.rules.base import LintContext
from gpuherd.lint.sources.compose import compose_services
from gpuherd.lint.sources.device_plugin import embedded, standalone
from gpuherd.lint.sources.ecs import agent_config, task_definitions
from gpuherd.lint.sources.k8s import k8s_objects
from gpuherd.lint.sources.runtime import TomlError, from_json_doc, from_toml
from gpuherd.lint.sources.terraform import TerraformError, mentions_gpu_ami, terraform_inputs
from gpuherd.yamlpos import Pos, YamlError, load_documents

PARSE_ERROR = "parse-error"
UNKNOWN_INPUT = "unknown-input"

Parse = Callable[[str, str, LintContext], Finding | None]


@dataclass(frozen=True)
class InputKind:
    name: str
    recognise: Callable[[str, str], bool]
    parse: Parse


def _parse_error(source: str, pos: Pos, message: str) -> Finding:
    return Finding(
        rule=PARSE_ERROR,
        severity="error",
        file=source,
        line=pos.line,
        column=pos.column,
        object="",
        message=f"does not parse: {message}",
        fix="fix the file's syntax",
    )


def _base(source: str) -> str:
    return source.rsplit("/", 1)[-1]


# Built-in kinds that never hold a pod template nor anything a rule reads: not built, for speed.
_SKIPPED_KINDS = frozenset(
    {
        "Service",
        "Secret",
        "ServiceAccount",
        "Role",
        "ClusterRole",
        "RoleBinding",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "Namespace",
        "Ingress",
        "IngressClass",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "Endpoints",
        "EndpointSlice",
        "PriorityClass",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "APIService",
        "LimitRange",
        "ResourceQuota",
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
        "Certificate",
        "Issuer",
        "HTTPRoute",
        "Gateway",
    }
)
_SKIP_KEYS = frozenset({"managedFields"})


def _wanted(root: yaml.Node) -> bool:
    if not isinstance(root, yaml.MappingNode):
        return True
    top = {k.value: v for k, v in root.value if isinstance(k, yaml.ScalarNode)}
    kind_node = top.get("kind")
    if kind_node is None:
        return True  # not Kubernetes: Compose, ECS, plugin and runtime configs
    kind = str(kind_node.value) if isinstance(kind_node, yaml.ScalarNode) else ""
    if kind == "ConfigMap":
        return _may_hold_plugin_config(top.get("data"))
    return kind not in _SKIPPED_KINDS


def _may_hold_plugin_config(data: yaml.Node | None) -> bool:
    """Only ConfigMaps carrying a device-plugin config matter to the rules."""
    if not isinstance(data, yaml.MappingNode):
        return False
    return any(
        isinstance(v, yaml.ScalarNode)
        and "version" in v.value
        and ("sharing" in v.value or "flags" in v.value)
        for _k, v in data.value
    )


def parse_yaml(source: str, text: str, ctx: LintContext) -> Finding | None:
    try:
        docs = load_documents(text, source=source, keep=_wanted, skip_keys=_SKIP_KEYS)
    except YamlError as exc:
        return _parse_error(source, exc.pos, exc.message)
    lines = text.splitlines()
    for doc in docs:
        config = standalone(doc)
        if config is not None:
            ctx.plugin_configs.append(config)
            continue
        ctx.compose.extend(compose_services(doc))
        ctx.ecs_tasks.extend(task_definitions(doc))
        runtime_json = from_json_doc(doc)
        if runtime_json is not None:
            ctx.runtime_files.append(runtime_json)
        for obj in k8s_objects(doc):
            ctx.objects.append(obj)
            ctx.plugin_configs.extend(embedded(obj, lines))
    return None


def parse_toml(source: str, text: str, ctx: LintContext) -> Finding | None:
    try:
        runtime = from_toml(source, text)
    except TomlError as exc:
        return _parse_error(source, exc.pos, exc.message)
    if runtime is not None:
        ctx.runtime_files.append(runtime)
    return None


def parse_terraform(source: str, text: str, ctx: LintContext) -> Finding | None:
    """Task definitions, and the ECS agent settings its user data writes, of one .tf file."""
    try:
        tasks, agent = terraform_inputs(source, text)
    except TerraformError as exc:
        return _parse_error(source, exc.pos, exc.message)
    ctx.ecs_tasks.extend(tasks)
    if mentions_gpu_ami(text):
        ctx.gpu_ami_files.append(source)
    if agent is not None:
        ctx.ecs_agents.append(agent)
    return None


def parse_agent(source: str, text: str, ctx: LintContext) -> Finding | None:
    agent = agent_config(source, text)
    if agent is not None:
        ctx.ecs_agents.append(agent)
    return None


def _is_agent(name: str, text: str) -> bool:
    base = _base(name)
    if base == "ecs.config":
        return True
    return not base.endswith((".yaml", ".yml", ".json", ".toml")) and "/etc/ecs/ecs.config" in text


def _has_part(name: str, *parts: str) -> bool:
    """`config.toml.ubuntu`, `main.tf.example`: the known extension anywhere after the stem."""
    pieces = _base(name).split(".")[1:]
    return any(p in pieces for p in parts)


INPUT_KINDS: list[InputKind] = [
    InputKind("terraform", lambda n, _t: _has_part(n, "tf"), parse_terraform),
    InputKind("ecs-agent", _is_agent, parse_agent),
    InputKind("toml", lambda n, _t: _has_part(n, "toml", "tmpl"), parse_toml),
    InputKind(
        "yaml", lambda n, _t: _has_part(n, "yaml", "yml", "json") or n == "<stdin>", parse_yaml
    ),
]


def _sniff(source: str, text: str, ctx: LintContext) -> Finding | None:
    """A name that says nothing: YAML (or JSON) when it parses as a mapping or list, else TOML."""
    shapes: list[bool] = []

    def shape(node: yaml.Node) -> bool:
        shapes.append(isinstance(node, yaml.MappingNode | yaml.SequenceNode))
        return False

    try:
        load_documents(text, source=source, keep=shape)
        structured = bool(shapes) and all(shapes)
    except YamlError:
        structured = False
    if structured:
        return parse_yaml(source, text, ctx)
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return Finding(
            rule=UNKNOWN_INPUT,
            severity="info",
            file=source,
            line=1,
            column=1,
            object="",
            message="unknown input type: not YAML, JSON, TOML or Terraform, so it was not checked",
            fix="name it with its format's extension (.yaml, .json, .toml, .tf), or leave it out",
        )
    return parse_toml(source, text, ctx)


def load(source: str, text: str, ctx: LintContext) -> Finding | None:
    """Add one input's objects to the context; a parse error comes back as a finding."""
    try:
        for kind in INPUT_KINDS:
            if kind.recognise(source, text):
                return kind.parse(source, text, ctx)
        return _sniff(source, text, ctx)
    except RecursionError:  # 50,000 nested arrays: a hostile or broken file, not a crash
        return _parse_error(source, Pos(1, 1), "nested too deeply to read")
