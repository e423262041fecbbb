"""gpuherd.yaml loading: the normative example, the homelab example, and positioned errors."""

from pathlib import Path

import pytest

from gpuherd.spec import JobName, SpecError, TenantName, load_config, parse_config
from gpuherd.spec.model import (
    CommandMethod,
    DoneFileCheck,
    ExistsCheck,
    ExitCodeCheck,
    GlobCheck,
    NotOnCpuCheck,
    OllamaMethod,
    VramAmount,
)

ROOT = Path(__file__).resolve().parents[2]
GIB = 1024**3

# The example from the foundation issue, verbatim: it must load and mean what its comments say.
NORMATIVE = """\
version: 1
gpus:
  - name: gpu0
    index: 0            # NVML index on this host (or uuid: GPU-...)
    memory: 12GiB       # optional: taken from the backend when present
    reserve: 512MiB     # never planned or admitted
    shares: 8           # time-slicing replicas advertised to Kubernetes
tenants:
  ollama:
    gpu: gpu0
    vram: {typical: 2GiB, peak: 4GiB}
    priority: 10                     # higher wins
    preemptible: true                # default true; false = never released
    max_downtime: 45m
    active: "always"                 # or a list of windows: [{cron: "0 18 * * *", for: 5h}]
    match: {cmdline: "ollama serve"} # how to find its GPU processes
    preempt:                         # methods tried in order; each pairs a release with its restore
      - ollama: {url: "http://127.0.0.1:11434"}
      - command: {release: ["systemctl", "stop", "ollama"], restore: ["systemctl", "start", "ollama"]}
jobs:
  mapshot-render:
    gpu: gpu0
    vram: 6GiB
    priority: 50
    command: ["./render.sh", "--resolution", "2048"]
    workdir: /srv/mapshot
    schedule: "0 4 * * *"
    timeout: 30m
    preflight:
      - exists: factorio/bin/x64/factorio
    success:
      - exit_code: 0
      - glob: {pattern: "out/d-*/*.jpg", min_count: 1313}
"""


def test_normative_example_means_what_it_says() -> None:
    config = parse_config(NORMATIVE, source="gpuherd.yaml")
    gpu = config.gpu("gpu0")
    assert gpu is not None
    assert (gpu.index, gpu.memory, gpu.reserve, gpu.shares) == (0, 12 * GIB, 512 * 1024**2, 8)
    assert gpu.capacity == 12 * GIB - 512 * 1024**2
    ollama = config.tenants[TenantName("ollama")]
    assert ollama.vram.typical == VramAmount(bytes=2 * GIB)
    assert ollama.vram.peak_amount == VramAmount(bytes=4 * GIB)
    assert (ollama.priority, ollama.preemptible, ollama.max_downtime) == (10, True, 2700.0)
    assert ollama.always_active
    assert ollama.match is not None
    assert ollama.match.cmdline == "ollama serve"
    assert [m.kind for m in ollama.preempt] == ["ollama", "command"]
    first, second = ollama.preempt
    assert isinstance(first, OllamaMethod)
    assert first.url == "http://127.0.0.1:11434"
    assert isinstance(second, CommandMethod)
    assert second.restore == ["systemctl", "start", "ollama"]
    job = config.jobs[JobName("mapshot-render")]
    assert job.vram == VramAmount(bytes=6 * GIB)
    assert (job.priority, job.schedule, job.timeout) == (50, "0 4 * * *", 1800.0)
    assert job.command == ["./render.sh", "--resolution", "2048"]
    assert job.preflight[0] == ExistsCheck(path="factorio/bin/x64/factorio")
    assert job.success[0] == ExitCodeCheck(code=0)
    glob = job.success[1]
    assert isinstance(glob, GlobCheck)
    assert (glob.pattern, glob.min_count) == ("out/d-*/*.jpg", 1313)


def test_homelab_example_loads() -> None:
    config = load_config(ROOT / "examples" / "homelab.yaml")
    assert set(config.tenants) == {"plex", "ollama", "tts", "whisper", "vllm", "ollama-ada"}
    assert config.tenants[TenantName("vllm")].vram.typical == VramAmount(fraction=0.70)
    assert config.tenants[TenantName("vllm")].vram.typical.resolve(12 * GIB) == int(12 * GIB * 0.7)
    assert not config.tenants[TenantName("plex")].preemptible
    three080 = config.gpu("homelabai-3080ti")
    assert three080 is not None
    assert three080.shares == 8
    ada = config.gpu("gpu01-ada")
    assert ada is not None
    assert (ada.node, ada.memory) == ("k3s-gpu-01", 20 * GIB)
    assert config.jobs[JobName("mapshot-render")].gpu == "gpu01-ada"


def test_shorthands() -> None:
    config = parse_config(
        """\
version: 1
tenants:
  a: {vram: 4GiB}
  b: {vram: {fraction: 70%}, active: [{cron: "0 18 * * *", for: 5h}]}
jobs:
  j:
    vram: 1GiB
    command: [/bin/true]
    success: [{glob: "out/*.png"}, {done_file: out/done}, {not_on_cpu: 30s}]
""",
        source="s.yaml",
    )
    assert config.auto_gpus
    assert config.tenants[TenantName("a")].vram.peak_amount == VramAmount(bytes=4 * GIB)
    b = config.tenants[TenantName("b")]
    assert b.active is not None
    assert (b.active[0].cron, b.active[0].for_) == ("0 18 * * *", 18000.0)
    checks = config.jobs[JobName("j")].success
    assert checks == [
        GlobCheck(pattern="out/*.png", min_count=1),
        DoneFileCheck(path="out/done", timeout=300.0),
        NotOnCpuCheck(within=30.0),
    ]


def _issues(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_config(text, source="g.yaml")
    return [str(i) for i in info.value.issues]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: 2\n", ["g.yaml:1:10: version: Input should be 1"]),
        ("gpus: auto\n", ["g.yaml:1:1: missing required field 'version'"]),
        (
            "version: 1\ntenants:\n  x:\n    vram: 4GiB\n    prioirty: 3\n",
            ["g.yaml:5:5: tenants.x.prioirty: unknown field 'prioirty'; did you mean 'priority'?"],
        ),
        (
            "version: 1\ntenants:\n  x:\n    vram: {typical: 4GiB, peak: 2GiB}\n",
            ["g.yaml:4:11: tenants.x.vram: peak (2.0 GiB) is below typical (4.0 GiB)"],
        ),
        (
            "version: 1\ntenants:\n  x: {vram: 4 parsecs}\n",
            [
                "g.yaml:3:13: tenants.x.vram.typical: unknown size unit 'parsecs' in '4 parsecs'; "
                "use B, KiB, MiB, GiB, TiB or G"
            ],
        ),
        (
            "version: 1\ntenants:\n  x:\n    vram: 1GiB\n    active: [{cron: '0 25 * * *', for: 1h}]\n",
            [
                "g.yaml:5:21: tenants.x.active[0].cron: invalid cron expression '0 25 * * *': "
                "[0 25 * * *] is not acceptable, out of range"
            ],
        ),
        (
            "version: 1\ntenants:\n  x:\n    vram: 1GiB\n    active: sometimes\n",
            [
                "g.yaml:5:13: tenants.x.active: expected 'always' or a list of windows like "
                "[{cron: '0 18 * * *', for: 5h}]"
            ],
        ),
        (
            "version: 1\ntenants:\n  x:\n    vram: 1GiB\n    preempt:\n      - {}\n",
            [
                "g.yaml:6:9: tenants.x.preempt[0]: each preempt method names exactly one of: ollama, "
                "vllm-sleep, http, command, signal, checkpoint, kubernetes (found none)"
            ],
        ),
        (
            "version: 1\ntenants:\n  x:\n    vram: 1GiB\n    match: {cmdline: 'a(('}\n",
            [
                "g.yaml:5:22: tenants.x.match.cmdline: invalid regular expression 'a((': "
                "missing ), unterminated subpattern at position 2"
            ],
        ),
        (
            "version: 1\ntenants:\n  x:\n    vram: 1GiB\n    preempt: [{signal: {signal: HUP2}}]\n",
            ["g.yaml:5:24: tenants.x.preempt[0].signal: unknown signal 'HUP2'"],
        ),
        (
            "version: 1\njobs:\n  j:\n    vram: 1GiB\n    command: []\n",
            [
                "g.yaml:5:14: jobs.j.command: List should have at least 1 item after validation, "
                "not 0"
            ],
        ),
        (
            "version: 1\njobs:\n  j:\n    vram: 1GiB\n",
            ["g.yaml:4:5: jobs.j: missing required field 'command'"],
        ),
        (
            "version: 1\njobs:\n  j:\n    vram: 1GiB\n    command: [x]\n    timeout: soon\n",
            [
                "g.yaml:6:14: jobs.j.timeout: expected a duration such as 90s, 30m, 2h, 1h30m or a "
                "number of seconds, got 'soon'"
            ],
        ),
        (
            "version: 1\ntimezone: Mars/Olympus\n",
            [
                "g.yaml:2:11: timezone: unknown time zone 'Mars/Olympus'; use an IANA name like "
                "Europe/Berlin"
            ],
        ),
        (
            "version: 1\ngpus: [{name: 'bad name', memory: 1GiB}]\n",
            [
                "g.yaml:2:15: gpus[0].name: invalid name 'bad name': use letters, digits, '.', '_' or "
                "'-' (at most 63), starting with a letter or digit"
            ],
        ),
        (
            "version: 1\ngpus:\n  - {name: g, memory: 1GiB, reserve: 2GiB}\n",
            ["g.yaml:3:5: gpus[0]: reserve must be smaller than memory"],
        ),
        (
            "version: 1\ntenants:\n  x: {vram: 1GiB}\n  x: {vram: 2GiB}\n",
            ["g.yaml:4:3: tenants.x: duplicate key (an earlier value would be lost)"],
        ),
        ("- a\n- b\n", ["g.yaml:1:1: expected a mapping with 'version: 1', found a list"]),
        ("", ["g.yaml:1:1: expected a mapping with 'version: 1', found an empty file"]),
        (
            "version: 1\ntenants: {x: {vram: 1GiB\n",
            ["g.yaml:3:1: while parsing a flow mapping; did not find expected ',' or '}'"],
        ),
    ],
)
def test_errors_name_line_column_and_field(text: str, expected: list[str]) -> None:
    assert _issues(text) == expected


def test_cross_references_and_capacity() -> None:
    text = """\
version: 1
gpus:
  - {name: gpu0, index: 0, memory: 12GiB, reserve: 512MiB}
  - {name: gpu0, index: 0}
tenants:
  a: {gpu: gpu9, vram: 1GiB}
  b: {gpu: gpu0, vram: {typical: 2GiB, peak: 12GiB}, anti_affinity: [b, nobody]}
jobs:
  j: {gpu: gpu0, vram: 13GiB, command: [x]}
"""
    assert _issues(text) == [
        "g.yaml:4:12: gpus[1].name: name 'gpu0' is already used by gpus[0]",
        "g.yaml:4:25: gpus[1].index: index 0 is already used by gpus[0]",
        "g.yaml:6:12: tenants.a.gpu: no GPU named 'gpu9'; did you mean 'gpu0'?",
        "g.yaml:7:46: tenants.b.vram.peak: 12.0 GiB can never fit on gpu0: 12.0 GiB minus "
        "512.0 MiB reserve leaves 11.5 GiB",
        "g.yaml:7:70: tenants.b.anti_affinity[0]: a tenant cannot avoid itself",
        "g.yaml:7:73: tenants.b.anti_affinity[1]: no tenant named 'nobody'",
        "g.yaml:9:24: jobs.j.vram: 13.0 GiB can never fit on gpu0: 12.0 GiB minus 512.0 MiB "
        "reserve leaves 11.5 GiB",
    ]


def test_same_index_on_different_nodes_is_fine() -> None:
    parse_config(
        "version: 1\ngpus:\n  - {name: a, node: n1, index: 0}\n  - {name: b, node: n2, index: 0}\n",
        source="n.yaml",
    )


def test_auto_gpus_are_named_by_index() -> None:
    parse_config("version: 1\ngpus: auto\ntenants: {x: {gpu: gpu1, vram: 1GiB}}\n", source="a.yaml")
    assert _issues("version: 1\ntenants: {x: {gpu: first, vram: 1GiB}}\n") == [
        "g.yaml:2:20: tenants.x.gpu: no GPU named 'first': with 'gpus: auto' GPUs are named "
        "gpu0, gpu1, ..."
    ]


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_config(tmp_path / "missing.yaml")
    assert (
        str(info.value)
        == f"{tmp_path / 'missing.yaml'}:1:1: cannot read file: No such file or directory"
    )
