"""The typed model of gpuherd.yaml: GPUs, tenants (long-running GPU users) and jobs.

Every part of gpuherd (planner, linter cross-checks, broker) reads these objects, never the raw
YAML. Units are parsed at the edge (`gpuherd.units`), so sizes are ints of bytes and durations
floats of seconds everywhere past this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeAlias, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    SerializerFunctionWrapHandler,
    Tag,
    model_serializer,
    model_validator,
)

from gpuherd.ids import GpuName, JobName, TenantName
from gpuherd.spec.jobtemplate import job_template
from gpuherd.units import parse_bytes, parse_cron, parse_duration, parse_fraction

ByteSize = Annotated[int, BeforeValidator(parse_bytes)]
Duration = Annotated[float, BeforeValidator(parse_duration)]
Cron = Annotated[str, BeforeValidator(parse_cron)]


def _no_nul(argv: list[str]) -> list[str]:
    # exec refuses a NUL byte: caught here, not after tenants were released for the job.
    for i, arg in enumerate(argv):
        if "\x00" in arg:
            raise ValueError(f"argument {i} contains a NUL byte")
    return argv


def _env(env: dict[str, str]) -> dict[str, str]:
    for key, value in env.items():
        if not key or "=" in key or "\x00" in key:
            raise ValueError(f"invalid environment variable name {key!r}")
        if "\x00" in value:
            raise ValueError(f"the value of {key} contains a NUL byte")
    return env


Argv = Annotated[list[str], Field(min_length=1), AfterValidator(_no_nul)]
Env = Annotated[dict[str, str], AfterValidator(_env)]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def _check_name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(
            f"invalid name {value!r}: use letters, digits, '.', '_' or '-' (at most 63), "
            "starting with a letter or digit"
        )
    return value


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return value


Name = Annotated[str, AfterValidator(_check_name)]
Regex = Annotated[str, AfterValidator(_check_regex)]


class SpecModel(BaseModel):
    """Base: unknown keys are errors (typos must not be silently ignored), objects immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- VRAM amounts --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VramAmount:
    """Either an absolute number of bytes or a fraction of the GPU's total memory."""

    bytes: int | None = None
    fraction: float | None = None

    def resolve(self, gpu_total: int | None) -> int | None:
        """Bytes on a GPU of `gpu_total` bytes; None if a fraction meets an unknown total."""
        if self.bytes is not None:
            return self.bytes
        if self.fraction is None or gpu_total is None:
            return None
        return int(gpu_total * self.fraction)

    def __str__(self) -> str:
        if self.bytes is not None:
            from gpuherd.units import format_bytes

            return format_bytes(self.bytes)
        return f"{self.fraction:g} of the GPU"


def _vram_amount(value: Any) -> VramAmount:
    if isinstance(value, VramAmount):
        return value
    if isinstance(value, dict) and "bytes" in value and set(value) <= {"bytes", "fraction"}:
        if value["bytes"] is None:  # read back from model_dump()
            return VramAmount(fraction=parse_fraction(value["fraction"]))
        return VramAmount(bytes=parse_bytes(value["bytes"]))
    if isinstance(value, dict):
        if set(value) != {"fraction"}:
            raise ValueError("expected a size such as 6GiB or {fraction: 0.7}")
        return VramAmount(fraction=parse_fraction(value["fraction"]))
    return VramAmount(bytes=parse_bytes(value))


Vram = Annotated[VramAmount, BeforeValidator(_vram_amount)]


class TenantVram(SpecModel):
    """What a tenant normally holds (`typical`) and the most it may grab (`peak`)."""

    typical: Vram
    peak: Vram | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        # `vram: 4GiB` and `vram: {fraction: 0.7}` mean typical = peak.
        if isinstance(value, dict) and ("typical" in value or "peak" in value):
            return value
        return {"typical": value}

    @model_validator(mode="after")
    def _peak_not_below_typical(self) -> TenantVram:
        if self.peak is None:
            object.__setattr__(self, "peak", self.typical)
        peak = self.peak_amount
        if (
            self.typical.bytes is not None
            and peak.bytes is not None
            and peak.bytes < self.typical.bytes
        ):
            raise ValueError(f"peak ({peak}) is below typical ({self.typical})")
        return self

    @property
    def peak_amount(self) -> VramAmount:
        return self.peak if self.peak is not None else self.typical


# --- GPUs ----------------------------------------------------------------------------------


class GuardSpec(SpecModel):
    """The headroom guard of one GPU: when less than `min_free` stays free for `for`, idle
    lower-priority tenants are released until it is back; once `min_free` + `restore_above` +
    a released tenant's size has stayed free for `restore_after`, that tenant comes back."""

    min_free: ByteSize
    for_: Annotated[Duration, Field(alias="for", ge=0)] = 5.0
    restore_above: ByteSize = 1 << 30
    restore_after: Annotated[Duration, Field(ge=0)] = 60.0
    # More guard releases than this in an hour: the GPU flaps (status, an event, a metric).
    flaps_per_hour: Annotated[int, Field(ge=1)] = 4


class GpuSpec(SpecModel):
    """One physical GPU (or MIG instance) the tenants and jobs are placed on."""

    name: Annotated[GpuName, AfterValidator(_check_name)]
    index: Annotated[int, Field(ge=0)] | None = None
    uuid: Annotated[str, Field(pattern=r"^(GPU|MIG)-[0-9A-Za-z-]+$")] | None = None
    node: str | None = None
    model: str | None = None
    memory: ByteSize | None = None
    reserve: ByteSize = 0
    shares: Annotated[int, Field(ge=1)] = 1
    guard: GuardSpec | None = None

    @model_validator(mode="after")
    def _reserve_fits(self) -> GpuSpec:
        if self.memory is not None and self.reserve >= self.memory:
            raise ValueError("reserve must be smaller than memory")
        guard, memory = self.guard, self.memory
        if guard is not None and memory is not None and guard.min_free >= memory - self.reserve:
            # The guard would release every idle tenant and still never be satisfied.
            raise ValueError("guard.min_free must be smaller than memory - reserve")
        return self

    @property
    def capacity(self) -> int | None:
        """Memory that may be planned or admitted: total minus the reserve."""
        return None if self.memory is None else self.memory - self.reserve


def _gpus_or_auto(value: Any) -> Any:
    if value == "auto" or value is None:
        return None
    if isinstance(value, str):
        raise ValueError("expected 'auto' or a list of GPUs")
    return value


# --- When a tenant is active -----------------------------------------------------------------


class Window(SpecModel):
    """A recurring activity window: starts at each `cron` firing and lasts `for`."""

    cron: Cron
    for_: Annotated[Duration, Field(alias="for", gt=0)]


def _always_or_windows(value: Any) -> Any:
    if value == "always" or value is None:
        return None
    if isinstance(value, str):
        raise ValueError(
            "expected 'always' or a list of windows like [{cron: '0 18 * * *', for: 5h}]"
        )
    return value


# --- How to find a tenant's processes --------------------------------------------------------


class PodMatch(SpecModel):
    namespace: str | None = None
    name: str | None = None
    uid: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class Match(SpecModel):
    """Criteria a GPU process must meet to count as this tenant's; all given ones must hold."""

    cmdline: Regex | None = None
    pid_file: str | None = None
    container: str | None = None
    systemd_unit: str | None = None
    pod: PodMatch | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> Match:
        if all(getattr(self, name) is None for name in type(self).model_fields):
            raise ValueError(
                "match needs at least one of: cmdline, pid_file, container, systemd_unit, pod"
            )
        return self


# --- Tagged unions: `- kind: {settings}` list items ---------------------------------------------


class Tagged(SpecModel):
    """One member of a tagged union written in YAML as a one-key mapping, `- ollama: {url: ...}`.

    The key is the member's `KIND`; a scalar value stands for its `SCALAR` field
    (`- exists: out/` is `- exists: {path: out/}`). Consumers match on the type, never on a
    chain of optional fields.
    """

    KIND: ClassVar[str]
    SCALAR: ClassVar[str | None] = None

    @model_validator(mode="before")
    @classmethod
    def _unwrap(cls, value: Any) -> Any:
        if isinstance(value, dict) and set(value) == {cls.KIND}:
            value = value[cls.KIND]
            if cls.SCALAR is not None and not isinstance(value, dict):
                value = {cls.SCALAR: value}
            elif value is None:
                value = {}
        return value

    @model_serializer(mode="wrap")
    def _wrap(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {self.KIND: handler(self)}  # dumped as written: `{kind: {fields}}`

    @property
    def kind(self) -> str:
        return self.KIND

    def settings(self) -> dict[str, Any]:
        """The YAML form, `{kind: {fields}}`, JSON-ready: journaled so a restore never depends
        on the config of the day."""
        return self.model_dump(mode="json", by_alias=True)


def _tag(value: Any) -> str | None:
    if isinstance(value, Tagged):
        return value.KIND
    if isinstance(value, dict) and len(value) == 1:
        return str(next(iter(value)))
    return None


def tagged_union(what: str, *members: type[Tagged]) -> Any:
    """`Annotated[A | B | ..., ...]` reading `- kind: {...}` items: exactly one key, a known
    kind (with a "did you mean"), then that member's own validation at `...[i].kind.field`."""
    kinds = [m.KIND for m in members]

    def one_kind(value: Any) -> Any:
        if isinstance(value, Tagged):
            return value
        if not isinstance(value, dict) or len(value) != 1:
            found = len(value) if isinstance(value, dict) else 0
            count = f"found {found}" if found else "found none"
            raise ValueError(f"each {what} names exactly one of: {', '.join(kinds)} ({count})")
        key = str(next(iter(value)))
        if key not in kinds:
            import difflib

            close = difflib.get_close_matches(key, kinds, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f" (known: {', '.join(kinds)})"
            raise ValueError(f"unknown {what} '{key}'{hint}")
        return value

    union: Any = Union[tuple(Annotated[m, Tag(m.KIND)] for m in members)]  # noqa: UP007
    return Annotated[union, Discriminator(_tag), BeforeValidator(one_kind)]


# --- Release and restore methods -------------------------------------------------------------


class OllamaMethod(Tagged):
    KIND = "ollama"
    url: str = "http://127.0.0.1:11434"
    reload: bool = True


class VllmSleepMethod(Tagged):
    KIND = "vllm-sleep"
    url: str = "http://127.0.0.1:8000"
    level: Literal[1, 2] = 1


class HttpCall(SpecModel):
    method: Literal["GET", "POST", "PUT", "DELETE"] = "POST"
    url: str
    json_body: Any = Field(default=None, alias="json")


class HttpMethod(Tagged):
    KIND = "http"
    preset: Literal["comfyui", "a1111", "llamacpp"] | None = None
    url: str | None = None
    model: str | None = None
    release: HttpCall | None = None
    restore: HttpCall | None = None

    @model_validator(mode="after")
    def _preset_or_calls(self) -> HttpMethod:
        if self.preset is None and self.release is None:
            raise ValueError("http needs a preset (comfyui, a1111, llamacpp) or a release call")
        if self.preset is not None and self.url is None:
            raise ValueError(f"http preset {self.preset!r} needs the server's base url")
        if self.preset == "llamacpp" and self.model is None:
            raise ValueError("http preset 'llamacpp' needs the model to unload")
        return self


class CommandMethod(Tagged):
    KIND = "command"
    release: Argv
    restore: Argv


class SignalMethod(Tagged):
    KIND = "signal"
    signal: str = "TERM"
    grace: Duration = 10.0
    start: Argv | None = None

    @model_validator(mode="after")
    def _known_signal(self) -> SignalMethod:
        import signal as _signal

        name = self.signal.upper().removeprefix("SIG")
        if not hasattr(_signal, f"SIG{name}"):
            raise ValueError(f"unknown signal {self.signal!r}")
        return self


class CheckpointMethod(Tagged):
    KIND = "checkpoint"
    lock_timeout: Duration = 10.0
    # Restore onto another GPU of the same chip when its own has no room (where the driver
    # can remap a checkpointed process between GPUs).
    move: bool = False


class KubernetesMethod(Tagged):
    KIND = "kubernetes"
    kind_: Literal["Deployment", "StatefulSet"] = Field("Deployment", alias="kind")
    namespace: str = "default"
    name: str


_METHODS = (
    OllamaMethod,
    VllmSleepMethod,
    HttpMethod,
    CommandMethod,
    SignalMethod,
    CheckpointMethod,
    KubernetesMethod,
)
METHOD_KINDS = tuple(m.KIND for m in _METHODS)

# One release/restore pair; a tenant's list of them is tried in order.
if TYPE_CHECKING:
    PreemptMethod: TypeAlias = (
        OllamaMethod
        | VllmSleepMethod
        | HttpMethod
        | CommandMethod
        | SignalMethod
        | CheckpointMethod
        | KubernetesMethod
    )
else:
    PreemptMethod = tagged_union("preempt method", *_METHODS)


class UrlHealth(Tagged):
    KIND = "url"
    SCALAR = "url"
    url: str


class CommandHealth(Tagged):
    KIND = "command"
    SCALAR = "argv"
    argv: Argv


if TYPE_CHECKING:
    Health: TypeAlias = UrlHealth | CommandHealth
else:
    Health = tagged_union("health check", UrlHealth, CommandHealth)


App = Literal[
    "ollama",
    "vllm",
    "llamacpp",
    "comfyui",
    "a1111",
    "whisper",
    "tts",
    "plex",
    "jellyfin",
    "generic",
]


class TenantSpec(SpecModel):
    """A long-running GPU user (a model server, a transcoder) that jobs may preempt."""

    gpu: GpuName | None = None
    node: str | None = None
    app: App | None = None
    vram: TenantVram
    priority: int = 0
    preemptible: bool = True
    max_downtime: Duration | None = None
    cooldown: Duration = 60.0
    active: Annotated[list[Window] | None, BeforeValidator(_always_or_windows)] = None
    match: Match | None = None
    preempt: list[PreemptMethod] = Field(default_factory=list)
    release_timeout: Duration = 60.0
    restore_timeout: Duration = 120.0
    health: Health | None = None
    shares: Annotated[int, Field(ge=1)] = 1
    anti_affinity: list[TenantName] = Field(default_factory=list)
    # Its burst: while it is active the GPU's guard keeps this much free for it.
    headroom: ByteSize = 0
    # Where per-process GPU utilization is unknown: passes while it serves nothing.
    idle: Health | None = None

    @property
    def always_active(self) -> bool:
        return self.active is None


# --- Job checks ----------------------------------------------------------------------------


class DiskCheck(Tagged):
    KIND = "min_free_disk"
    path: str = "."
    size: ByteSize


class ExistsCheck(Tagged):
    KIND = "exists"
    SCALAR = "path"
    path: str


class CommandCheck(Tagged):
    KIND = "command"
    SCALAR = "name"
    name: str


class CountCheck(Tagged):
    KIND = "count"
    glob: str
    min: Annotated[int, Field(ge=1)] = 1


class SizeCheck(Tagged):
    KIND = "min_size"
    path: str
    size: ByteSize


# Checked before anything is preempted: never free VRAM for a job that cannot start.
if TYPE_CHECKING:
    PreflightCheck: TypeAlias = ExistsCheck | DiskCheck | CommandCheck | CountCheck | SizeCheck
else:
    PreflightCheck = tagged_union(
        "preflight check", ExistsCheck, DiskCheck, CommandCheck, CountCheck, SizeCheck
    )


class ExitCodeCheck(Tagged):
    KIND = "exit_code"
    SCALAR = "code"
    code: int


class GlobCheck(Tagged):
    KIND = "glob"
    SCALAR = "pattern"
    pattern: str
    min_count: Annotated[int, Field(ge=1)] = 1


class DoneFileCheck(Tagged):
    KIND = "done_file"
    SCALAR = "path"
    path: str
    timeout: Duration = 300.0


class NotOnCpuCheck(Tagged):
    KIND = "not_on_cpu"
    SCALAR = "within"
    within: Duration = 60.0


# Checked after the job exits; all must pass for the run to count as a success.
if TYPE_CHECKING:
    SuccessCheck: TypeAlias = ExitCodeCheck | GlobCheck | DoneFileCheck | NotOnCpuCheck
else:
    SuccessCheck = tagged_union(
        "success check", ExitCodeCheck, GlobCheck, DoneFileCheck, NotOnCpuCheck
    )


class KubernetesJob(SpecModel):
    """A job run as a Kubernetes Job (only by `gpuherd serve --kubernetes`): `template` is a
    batch/v1 Job or its spec, created suspended and admitted like a queued Job."""

    template: Annotated[dict[str, Any], AfterValidator(job_template)]


class JobSpec(SpecModel):
    """A run-to-completion GPU job (a render, a training run) that may preempt tenants."""

    gpu: GpuName | None = None
    node: str | None = None
    vram: Vram
    priority: int = 0
    command: Argv | None = None  # exactly one of command and kubernetes
    kubernetes: KubernetesJob | None = None
    workdir: str | None = None
    env: Env = Field(default_factory=dict)
    schedule: Cron | None = None
    catch_up: Duration | None = None
    timeout: Annotated[Duration, Field(gt=0)] = 3600.0
    grace: Duration = 30.0
    preflight: list[PreflightCheck] = Field(default_factory=list)
    success: list[SuccessCheck] = Field(default_factory=list)
    shares: Annotated[int, Field(ge=1)] = 1

    @model_validator(mode="after")
    def _runs_one_thing(self) -> JobSpec:
        if self.command is None and self.kubernetes is None:
            raise ValueError("missing required field 'command'")
        if self.command is not None and self.kubernetes is not None:
            raise ValueError(
                "'command' and 'kubernetes' exclude each other: a job runs a local command "
                "or a Kubernetes Job"
            )
        return self


class BrokerSpec(SpecModel):
    allow_adhoc: bool = False
    poll_interval: Annotated[Duration, Field(gt=0)] = 1.0
    # Between polls, guarded GPUs' free memory is read this often (a cheap reading, no process
    # list) and a crossing of the guard's lines steps the engine at once; 0 turns it off.
    guard_sample: Annotated[Duration, Field(ge=0)] = 0.25
    # A failed restore is retried after restore_retry, doubling up to restore_retry_max.
    restore_retry: Annotated[Duration, Field(gt=0)] = 5.0
    restore_retry_max: Annotated[Duration, Field(gt=0)] = 300.0


def _check_timezone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r}; use an IANA name like Europe/Berlin"
        ) from None
    return value


class Config(SpecModel):
    """The whole gpuherd.yaml."""

    version: Literal[1]
    timezone: Annotated[str, AfterValidator(_check_timezone)] | None = None
    gpus: Annotated[list[GpuSpec] | None, BeforeValidator(_gpus_or_auto)] = None
    tenants: dict[Annotated[TenantName, AfterValidator(_check_name)], TenantSpec] = Field(
        default_factory=dict
    )
    jobs: dict[Annotated[JobName, AfterValidator(_check_name)], JobSpec] = Field(
        default_factory=dict
    )
    broker: BrokerSpec = Field(default_factory=BrokerSpec)

    @property
    def auto_gpus(self) -> bool:
        return self.gpus is None

    def gpu(self, name: str) -> GpuSpec | None:
        for spec in self.gpus or ():
            if spec.name == name:
                return spec
        return None
