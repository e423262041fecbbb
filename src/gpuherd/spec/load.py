"""Read gpuherd.yaml into a `Config`, turning every problem into `FILE:LINE:COL: path: message`.

Validation runs in two passes: pydantic checks each value's shape and units, then
`_cross_check` checks what only the whole file can tell (references between GPUs, tenants and
jobs, sizes that can never fit). Both report through `SpecIssue`, positioned by `yamlpos`.
"""

from __future__ import annotations

import difflib
import itertools
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

from pydantic import BaseModel, ValidationError

from gpuherd.ids import GpuName
from gpuherd.spec.model import Config, GpuSpec, Tagged
from gpuherd.units import format_bytes
from gpuherd.yamlpos import Path, Pos, PositionedDoc, YamlError, load_document

__all__ = ["SpecError", "SpecIssue", "load_config", "parse_config"]


@dataclass(frozen=True, slots=True)
class SpecIssue:
    """One problem in a config file, at the key or value it is about."""

    source: str
    pos: Pos
    path: Path
    message: str

    def __str__(self) -> str:
        where = f"{_dotted(self.path)}: " if self.path else ""
        return f"{self.source}:{self.pos.line}:{self.pos.column}: {where}{self.message}"


class SpecError(Exception):
    """The config does not load; `issues` holds every problem found, in file order."""

    def __init__(self, issues: list[SpecIssue]) -> None:
        self.issues = sorted(issues, key=lambda i: (i.pos.line, i.pos.column))
        super().__init__("\n".join(str(i) for i in self.issues))


def _dotted(path: Path) -> str:
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return text


def load_config(path: str | FsPath, *, unavailable: Mapping[str, str] | None = None) -> Config:
    """Load and validate a gpuherd.yaml file; raise SpecError naming file, line and column.

    `unavailable` maps preempt method kinds that cannot run here to why: a config naming one
    is refused (a broker must not find out at 4 AM that it cannot release a tenant)."""
    source = str(path)
    try:
        text = FsPath(path).read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise SpecError([SpecIssue(source, Pos(1, 1), (), f"cannot read file: {reason}")]) from None
    return parse_config(text, source=source, unavailable=unavailable)


def parse_config(
    text: str | bytes, *, source: str, unavailable: Mapping[str, str] | None = None
) -> Config:
    """Validate config text; `source` names it in messages."""
    try:
        doc = load_document(text, source=source)
    except YamlError as exc:
        raise SpecError([SpecIssue(source, exc.pos, (), exc.message)]) from None
    issues = [
        SpecIssue(source, dup.pos, dup.path, "duplicate key (an earlier value would be lost)")
        for dup in doc.duplicates
    ]
    if not isinstance(doc.data, dict):
        found = "an empty file" if doc.data is None else f"a {type(doc.data).__name__}"
        issues.append(
            SpecIssue(source, doc.start, (), f"expected a mapping with 'version: 1', found {found}")
        )
        raise SpecError(issues)
    try:
        config = Config.model_validate(doc.data)
    except ValidationError as exc:
        issues.extend(_from_pydantic(exc, doc))
        raise SpecError(issues) from None
    checks = _cross_check(config, doc)
    if unavailable:
        checks = itertools.chain(checks, _check_methods(config, doc, unavailable))
    issues.extend(SpecIssue(source, pos, path, msg) for path, pos, msg in checks)
    if issues:
        raise SpecError(issues)
    return config


# --- pydantic errors -> positioned issues ----------------------------------------------------


def _from_pydantic(exc: ValidationError, doc: PositionedDoc) -> Iterator[SpecIssue]:
    for err in exc.errors(include_url=False):
        loc: Path = tuple(step for step in err["loc"] if isinstance(step, str | int))
        kind = err["type"]
        if kind == "missing":
            parent = loc[:-1]
            yield SpecIssue(
                doc.source, doc.value_pos(parent), parent, f"missing required field '{loc[-1]}'"
            )
        elif kind == "extra_forbidden":
            yield SpecIssue(doc.source, doc.key_pos(loc), loc, _unknown_field(loc))
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
            if kind.endswith("_type") and "input" in err:
                message += f", got {_describe(err['input'])}"
            # Whole-object validators report on the object: point at its first key.
            yield SpecIssue(doc.source, doc.value_pos(loc), loc, message)


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _unknown_field(loc: Path) -> str:
    name = str(loc[-1])
    known = _fields_at(Config, loc[:-1])
    message = f"unknown field '{name}'"
    if known:
        close = difflib.get_close_matches(name, known, n=1)
        if close:
            return f"{message}; did you mean '{close[0]}'?"
        message += f" (expected one of: {', '.join(sorted(known))})"
    return message


def _fields_at(model: type[BaseModel], path: Path) -> list[str]:
    """Field names (as written in YAML) of the model found at `path`, for 'did you mean'."""
    target: Any = model
    for step in path:
        target = _step_into(target, step)
        if target is None:
            return []
    target = _unwrap(target)
    if isinstance(target, type) and issubclass(target, BaseModel):
        return [info.alias or name for name, info in target.model_fields.items()]
    return []


def _step_into(target: Any, step: str | int) -> Any:
    target = _unwrap(target)
    members = _tagged_members(target)
    if members:  # `preempt[0].ollama`: the tag names the member
        return next((m for m in members if step == m.KIND), None)
    if isinstance(target, type) and issubclass(target, BaseModel):
        for name, info in target.model_fields.items():
            if step in (name, info.alias):
                return info.annotation
        return None
    origin = typing.get_origin(target)
    args = typing.get_args(target)
    if origin is dict and len(args) == 2:
        return args[1]
    if origin is list and args:
        return args[0]
    return None


def _tagged_members(target: Any) -> list[type[Tagged]]:
    if typing.get_origin(target) not in (typing.Union, types.UnionType):
        return []
    members = [_unwrap(a) for a in typing.get_args(target)]
    return [m for m in members if isinstance(m, type) and issubclass(m, Tagged)]


def _unwrap(target: Any) -> Any:
    """Strip Annotated[...] and Optional[...] down to the model or container inside."""
    while True:
        origin = typing.get_origin(target)
        if origin is typing.Annotated:
            target = typing.get_args(target)[0]
        elif origin in (typing.Union, types.UnionType):
            inner = [a for a in typing.get_args(target) if a is not type(None)]
            if len(inner) != 1:
                return target
            target = inner[0]
        else:
            return target


# --- whole-file checks -----------------------------------------------------------------------


def _cross_check(config: Config, doc: PositionedDoc) -> Iterator[tuple[Path, Pos, str]]:
    yield from _check_gpus(config.gpus or [], doc)
    yield from _check_anti_affinity(config, doc)
    yield from _check_fits(config, doc)


def _check_methods(
    config: Config, doc: PositionedDoc, unavailable: Mapping[str, str]
) -> Iterator[tuple[Path, Pos, str]]:
    for name, tenant in config.tenants.items():
        for i, method in enumerate(tenant.preempt):
            if method.kind in unavailable:
                path: Path = ("tenants", name, "preempt", i, method.kind)
                yield path, doc.key_pos(path), unavailable[method.kind]


def _check_gpus(gpus: list[GpuSpec], doc: PositionedDoc) -> Iterator[tuple[Path, Pos, str]]:
    """GPU names, (node, index) pairs and UUIDs must each be unique."""
    first: dict[tuple[str, object], int] = {}
    for i, gpu in enumerate(gpus):
        keys: list[tuple[str, object, str]] = [("name", gpu.name, f"name '{gpu.name}'")]
        if gpu.index is not None:
            on = f" on node '{gpu.node}'" if gpu.node else ""
            keys.append(("index", (gpu.node, gpu.index), f"index {gpu.index}{on}"))
        if gpu.uuid is not None:
            keys.append(("uuid", gpu.uuid, f"uuid {gpu.uuid}"))
        for field, key, text in keys:
            if (field, key) in first:
                path: Path = ("gpus", i, field)
                yield (
                    path,
                    doc.value_pos(path),
                    f"{text} is already used by gpus[{first[field, key]}]",
                )
            first.setdefault((field, key), i)


def _check_anti_affinity(config: Config, doc: PositionedDoc) -> Iterator[tuple[Path, Pos, str]]:
    for name, tenant in config.tenants.items():
        for j, other in enumerate(tenant.anti_affinity):
            path: Path = ("tenants", name, "anti_affinity", j)
            if other not in config.tenants:
                yield path, doc.value_pos(path), f"no tenant named '{other}'"
            elif other == name:
                yield path, doc.value_pos(path), "a tenant cannot avoid itself"


def _check_fits(config: Config, doc: PositionedDoc) -> Iterator[tuple[Path, Pos, str]]:
    """References to GPUs exist, and no declared size exceeds its GPU's capacity."""
    users: list[tuple[Path, str | None, list[tuple[Path, int | None]]]] = []
    for tname, tenant in config.tenants.items():
        sizes: list[tuple[Path, int | None]] = [
            (("typical",), tenant.vram.typical.bytes),
            (("peak",), tenant.vram.peak_amount.bytes),
        ]
        users.append((("tenants", tname), tenant.gpu, sizes))
    for jname, job in config.jobs.items():
        users.append((("jobs", jname), job.gpu, [((), job.vram.bytes)]))
    for base, gpu_name, sizes in users:
        if gpu_name is None:
            continue
        gpu = _find_gpu(config, gpu_name)
        if gpu is None:
            path: Path = (*base, "gpu")
            yield path, doc.value_pos(path), _unknown_gpu(config, gpu_name)
            continue
        capacity = gpu.capacity
        for sub, size in sizes:
            if capacity is None or size is None or size <= capacity:
                continue
            path = (*base, "vram", *sub) if doc.has_path((*base, "vram", *sub)) else (*base, "vram")
            yield (
                path,
                doc.value_pos(path),
                (
                    f"{format_bytes(size)} can never fit on {gpu.name}: "
                    f"{format_bytes(gpu.memory)} minus {format_bytes(gpu.reserve)} reserve "
                    f"leaves {format_bytes(capacity)}"
                ),
            )


def _find_gpu(config: Config, name: str) -> GpuSpec | None:
    if config.gpus is None:
        # gpus: auto names the host's devices gpu0, gpu1, ... by NVML index.
        suffix = name.removeprefix("gpu")
        return GpuSpec(name=GpuName(name), index=int(suffix)) if suffix.isdigit() else None
    return config.gpu(name)


def _unknown_gpu(config: Config, name: str) -> str:
    if config.gpus is None:
        return f"no GPU named '{name}': with 'gpus: auto' GPUs are named gpu0, gpu1, ..."
    names = [g.name for g in config.gpus]
    close = difflib.get_close_matches(name, names, n=1)
    hint = (
        f"; did you mean '{close[0]}'?" if close else f" (declared: {', '.join(names) or 'none'})"
    )
    return f"no GPU named '{name}'{hint}"
