"""The typed model of gpuherd.yaml: GPUs, tenants (long-running GPU users) and jobs.

Every part of gpuherd (planner, linter cross-checks, broker) reads these objects, never the raw
YAML. Units are parsed at the edge (`gpuherd.units`), so sizes are ints of bytes and durations
floats of seconds everywhere past this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from gpuherd.ids import GpuName, JobName, TenantName
from gpuherd.units import parse_bytes, parse_cron, parse_duration, parse_fraction

ByteSize = Annotated[int, BeforeValidator(parse_bytes)]
Duration = Annotated[float, BeforeValidator(parse_duration)]
Cron = Annotated[str, BeforeValidator(parse_cron)]
Argv = Annotated[list[str], Field(min_length=1)]

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


def exactly_one(model: BaseModel, what: str) -> None:
    """For `- method: {...}` lists: a list item must name exactly one of its model's keys."""
    chosen = [name for name in type(model).model_fields if getattr(model, name) is not None]
    if len(chosen) != 1:
        keys = ", ".join((info.alias or name) for name, info in type(model).model_fields.items())
        found = f"found {len(chosen)}" if chosen else "found none"
        raise ValueError(f"each {what} names exactly one of: {keys} ({found})")


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
        return VramAmount(bytes=parse_bytes(value["bytes"]))  # read back from model_dump()
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

    @model_validator(mode="after")
    def _reserve_fits(self) -> GpuSpec:
        if self.memory is not None and self.reserve >= self.memory:
            raise ValueError("reserve must be smaller than memory")
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


# --- Release and restore methods -------------------------------------------------------------


class OllamaMethod(SpecModel):
    url: str = "http://127.0.0.1:11434"
    reload: bool = True


class VllmSleepMethod(SpecModel):
    url: str = "http://127.0.0.1:8000"
    level: Literal[1, 2] = 1


class HttpCall(SpecModel):
    method: Literal["GET", "POST", "PUT", "DELETE"] = "POST"
    url: str
    json_body: Any = Field(default=None, alias="json")


class HttpMethod(SpecModel):
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


class CommandMethod(SpecModel):
    release: Argv
    restore: Argv


class SignalMethod(SpecModel):
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


class CheckpointMethod(SpecModel):
    lock_timeout: Duration = 10.0


class KubernetesMethod(SpecModel):
    kind: Literal["Deployment", "StatefulSet"] = "Deployment"
    namespace: str = "default"
    name: str


class PreemptMethod(SpecModel):
    """One release/restore pair; a tenant's list of them is tried in order."""

    ollama: OllamaMethod | None = None
    vllm_sleep: VllmSleepMethod | None = Field(default=None, alias="vllm-sleep")
    http: HttpMethod | None = None
    command: CommandMethod | None = None
    signal: SignalMethod | None = None
    checkpoint: CheckpointMethod | None = None
    kubernetes: KubernetesMethod | None = None

    @model_validator(mode="after")
    def _one(self) -> PreemptMethod:
        exactly_one(self, "preempt method")
        return self

    @property
    def kind(self) -> str:
        for name, info in type(self).model_fields.items():
            if getattr(self, name) is not None:
                return info.alias or name
        raise AssertionError("validated to have one method")  # pragma: no cover


class Health(SpecModel):
    url: str | None = None
    command: Argv | None = None

    @model_validator(mode="after")
    def _one(self) -> Health:
        exactly_one(self, "health check")
        return self


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

    @property
    def always_active(self) -> bool:
        return self.active is None


# --- Job checks ----------------------------------------------------------------------------


def _scalar_to(field: str) -> Any:
    """Let `- check: value` stand for `- check: {field: value}`."""

    def convert(value: Any) -> Any:
        return value if isinstance(value, dict) else {field: value}

    return BeforeValidator(convert)


class DiskCheck(SpecModel):
    path: str = "."
    size: ByteSize


class CountCheck(SpecModel):
    glob: str
    min: Annotated[int, Field(ge=1)] = 1


class SizeCheck(SpecModel):
    path: str
    size: ByteSize


class PreflightCheck(SpecModel):
    """Checked before anything is preempted: never free VRAM for a job that cannot start."""

    exists: str | None = None
    min_free_disk: DiskCheck | None = None
    command: str | None = None
    count: CountCheck | None = None
    min_size: SizeCheck | None = None

    @model_validator(mode="after")
    def _one(self) -> PreflightCheck:
        exactly_one(self, "preflight check")
        return self


class GlobCheck(SpecModel):
    pattern: str
    min_count: Annotated[int, Field(ge=1)] = 1


class DoneFileCheck(SpecModel):
    path: str
    timeout: Duration = 300.0


class NotOnCpuCheck(SpecModel):
    within: Duration = 60.0


class SuccessCheck(SpecModel):
    """Checked after the job exits; all must pass for the run to count as a success."""

    exit_code: int | None = None
    glob: Annotated[GlobCheck | None, _scalar_to("pattern")] = None
    done_file: Annotated[DoneFileCheck | None, _scalar_to("path")] = None
    not_on_cpu: Annotated[NotOnCpuCheck | None, _scalar_to("within")] = None

    @model_validator(mode="after")
    def _one(self) -> SuccessCheck:
        exactly_one(self, "success check")
        return self


class JobSpec(SpecModel):
    """A run-to-completion GPU job (a render, a training run) that may preempt tenants."""

    gpu: GpuName | None = None
    node: str | None = None
    vram: Vram
    priority: int = 0
    command: Argv
    workdir: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    schedule: Cron | None = None
    catch_up: Duration | None = None
    timeout: Annotated[Duration, Field(gt=0)] = 3600.0
    grace: Duration = 30.0
    preflight: list[PreflightCheck] = Field(default_factory=list)
    success: list[SuccessCheck] = Field(default_factory=list)
    shares: Annotated[int, Field(ge=1)] = 1


class BrokerSpec(SpecModel):
    allow_adhoc: bool = False
    poll_interval: Annotated[Duration, Field(gt=0)] = 1.0
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
