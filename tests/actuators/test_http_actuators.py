"""HTTP methods against fake apps that hold sim VRAM: the backend shows what a release did."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gpuherd.actuators.base import ActContext, ActuatorError
from gpuherd.actuators.http import HttpActuator, OllamaActuator, VllmSleepActuator
from gpuherd.gpu.sim import SimHost
from tests.conftest import GIB, gpuherd_argv, wait_for

App = Callable[[str, str], str]


@pytest.fixture
def app(sim_dir: Path) -> Iterator[App]:
    procs: list[subprocess.Popen[str]] = []

    def start(kind: str, models: str) -> str:
        proc = subprocess.Popen(
            gpuherd_argv("sim", "app", kind, models, "--sim-dir", str(sim_dir)),
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        assert line[0] == "listening", line
        return f"http://127.0.0.1:{line[1]}"

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


def used(sim_dir: Path) -> int:
    with SimHost(sim_dir) as host:
        return host.snapshot().devices[0].memory_used


def ctx(tmp_path: Path) -> ActContext:
    return ActContext(tenant="t", pids=(), log_dir=tmp_path, timeout=10)


def test_ollama_unloads_every_model_and_reloads_them(
    app: App, sim_dir: Path, tmp_path: Path
) -> None:
    url = app("ollama", "llama3=3GiB,qwen=1GiB")
    assert used(sim_dir) == 4 * GIB
    act = OllamaActuator(url)
    detail = act.release(ctx(tmp_path))
    assert [m["model"] for m in detail["models"]] == ["llama3", "qwen"]
    assert all(m["keep_alive"].endswith("s") for m in detail["models"])
    assert used(sim_dir) == 0  # really freed, as the backend sees it
    assert act.restore(ctx(tmp_path), detail) == {"reloaded": ["llama3", "qwen"]}
    assert used(sim_dir) == 4 * GIB
    assert OllamaActuator(url, reload=False).restore(ctx(tmp_path), detail) == {"reloaded": []}


def test_ollama_reload_without_room_is_an_error(app: App, sim_dir: Path, tmp_path: Path) -> None:
    url = app("ollama", "big=8GiB")
    act = OllamaActuator(url)
    detail = act.release(ctx(tmp_path))
    app("ollama", "other=6GiB")  # someone else took the memory meanwhile
    with pytest.raises(ActuatorError, match=r"answered 500: .*out of memory"):
        act.restore(ctx(tmp_path), detail)


def test_vllm_sleep_waits_until_asleep(app: App, sim_dir: Path, tmp_path: Path) -> None:
    url = app("vllm", "weights=6GiB")
    act = VllmSleepActuator(url, level=1, poll=0.05)
    assert act.release(ctx(tmp_path)) == {"level": 1}
    assert used(sim_dir) == 0  # release returned only once the memory was gone
    act.restore(ctx(tmp_path), {})
    assert used(sim_dir) == 6 * GIB


def test_presets(app: App, sim_dir: Path, tmp_path: Path) -> None:
    comfy = app("comfyui", "sdxl=5GiB")
    act = HttpActuator(preset="comfyui", url=comfy)
    act.release(ctx(tmp_path))
    assert used(sim_dir) == 0
    assert act.restore(ctx(tmp_path), {}) == {"status": None}  # reloads on its next prompt
    a1111 = app("a1111", "sd15=2GiB")
    act = HttpActuator(preset="a1111", url=a1111)
    act.release(ctx(tmp_path))
    assert used(sim_dir) == 0
    act.restore(ctx(tmp_path), {})
    wait_for(lambda: used(sim_dir) == 2 * GIB)


def test_llamacpp_router_preset_and_generic_calls(app: App, sim_dir: Path, tmp_path: Path) -> None:
    llama = app("llamacpp", "qwen=3GiB,llama=2GiB")
    assert used(sim_dir) == 5 * GIB
    act = HttpActuator(preset="llamacpp", url=llama, model="qwen")
    act.release(ctx(tmp_path))
    assert used(sim_dir) == 2 * GIB  # only the named model left the GPU
    act.restore(ctx(tmp_path), {})
    assert used(sim_dir) == 5 * GIB
    # The same through explicit calls, as a user would write for an app without a preset.
    generic = HttpActuator(
        release=("POST", f"{llama}/models/unload", {"model": "llama"}),
        restore=("POST", f"{llama}/models/load", {"model": "llama"}),
    )
    assert generic.release(ctx(tmp_path)) == {"status": 200}
    assert used(sim_dir) == 3 * GIB
    generic.restore(ctx(tmp_path), {})
    assert used(sim_dir) == 5 * GIB
    wrong = HttpActuator(preset="llamacpp", url=llama, model="mistral")
    with pytest.raises(ActuatorError, match=r"/models/unload answered 404: .*mistral"):
        wrong.release(ctx(tmp_path))


def test_unreachable_server_is_an_actuator_error(tmp_path: Path) -> None:
    with pytest.raises(ActuatorError, match=r"GET http://127\.0\.0\.1:9/api/ps failed"):
        OllamaActuator("http://127.0.0.1:9").release(ctx(tmp_path))
