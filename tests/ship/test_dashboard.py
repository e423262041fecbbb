"""The web dashboard: served by `gpuherd serve --http` beside the socket, public page, data
behind the token; after a real release cycle on the simulated GPU, headless Chromium shows the
released-and-restored tenant, the job and the memory chart (asserted on the DOM; the picture is
kept as docs/dashboard.png when GPUHERD_DASHBOARD_SHOT names where to write it)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.broker.test_serve import cli
from tests.conftest import HolderFactory, gpuherd_argv

TOKEN = "dashboard-test-token-0123456789"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def broker(sim_dir: Path, tmp_path: Path, holder: HolderFactory) -> Iterator[tuple[str, Path]]:
    """`gpuherd serve --http` on the sim GPU (12 GiB): Whisper holds 8 GiB, a 6 GiB render needs
    it released. Yields the base URL and the socket."""
    hold = [*gpuherd_argv("sim", "hold", "--sim-dir", str(sim_dir))]
    holder("--vram", "8GiB", "--name", "whisper")
    config = tmp_path / "gpuherd.yaml"
    config.write_text(
        json.dumps(
            {
                "version": 1,
                "gpus": [{"name": "gpu0", "index": 0}],
                "broker": {"poll_interval": "0.2s"},
                "tenants": {
                    "whisper": {
                        "gpu": "gpu0",
                        "vram": "8GiB",
                        "max_downtime": "10m",
                        "priority": 10,
                        "match": {"cmdline": "--name whisper"},
                        "preempt": [
                            {
                                "signal": {
                                    "grace": "5s",
                                    "start": [*hold, "--vram", "8GiB", "--name", "whisper"],
                                }
                            }
                        ],
                    }
                },
                "jobs": {
                    "render": {
                        "gpu": "gpu0",
                        "vram": "6GiB",
                        "priority": 50,
                        "timeout": "1m",  # within Whisper's max_downtime
                        "command": [*hold, "--vram", "6GiB", "--for", "3s", "--name", "render"],
                    }
                },
            }
        )
    )
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)  # serve refuses a token others can read
    sock = tmp_path / "gpuherd.sock"
    port = free_port()
    server = subprocess.Popen(
        gpuherd_argv(
            "serve", "-c", str(config), "--backend", "sim", "--sim-dir", str(sim_dir),
            "--state", str(tmp_path / "state"), "--socket", str(sock),
            "--http", f"127.0.0.1:{port}", "--token-file", str(token_file),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        ready = json.loads(server.stdout.readline())
        assert ready["http"] == f"127.0.0.1:{port}"
        threading.Thread(target=server.stdout.read, daemon=True).start()
        yield f"http://127.0.0.1:{port}", sock
    finally:
        server.terminate()
        server.wait(timeout=30)


def release_cycle(url: str, sock: Path) -> str:
    """Submit the render over the socket; wait until it succeeded and Whisper is back."""
    job = cli("submit", "render", sock=sock).stdout.strip()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    deadline = time.monotonic() + 90
    with httpx.Client(base_url=url, headers=auth) as client:
        while time.monotonic() < deadline:
            state = client.get(f"/v1/jobs/{job}").json()["state"]
            tenants = {t["name"]: t for t in client.get("/v1/tenants").json()}
            if state == "succeeded" and tenants["whisper"]["last_down_s"] is not None:
                return job
            assert state not in ("failed", "cancelled"), state
            time.sleep(0.2)
        events = client.get("/v1/events").json()
    raise AssertionError(f"the release cycle did not finish: {state} {tenants} {events}")


def test_page_is_public_data_needs_the_token(broker: tuple[str, Path]) -> None:
    url, _ = broker
    with httpx.Client(base_url=url) as anonymous:
        page = anonymous.get("/")
        assert page.status_code == 200
        assert "/dashboard/dashboard.js" in page.text
        script = anonymous.get("/dashboard/dashboard.js").text
        assert "Authorization" in script
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", page.text + script)
        for path in ("/v1/status", "/v1/history", "/v1/tenants", "/v1/jobs", "/metrics"):
            assert anonymous.get(path).status_code == 401, path


def dump_dom(url: str, profile: Path, shot: Path | None = None) -> str:
    args = [
        CHROMIUM or "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", "--window-size=1280,1100",
        "--virtual-time-budget=8000", "--run-all-compositor-stages-before-draw",
    ]  # fmt: skip
    if shot is not None:
        args.append(f"--screenshot={shot}")
    else:
        args.append("--dump-dom")
    done = subprocess.run([*args, url], capture_output=True, text=True, timeout=120, check=False)
    return done.stdout


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (make test installs it where it can)"
)
def test_after_a_release_cycle_chromium_shows_the_tenant_the_job_and_the_chart(
    broker: tuple[str, Path], tmp_path: Path
) -> None:
    url, sock = broker
    job = release_cycle(url, sock)
    time.sleep(2.5)  # one more history sample with Whisper back
    page = f"{url}/#token={TOKEN}"
    dom = dump_dom(page, tmp_path / "profile")
    assert 'data-ready="1"' in dom, dom[-2000:]
    whisper = re.search(r'<tr data-tenant="whisper" data-state="(\w+)">(.*?)</tr>', dom)
    assert whisper is not None, dom
    assert whisper.group(1) == "running"
    assert "last down" in whisper.group(2)
    assert "(max 10.0 min)" in whisper.group(2)
    render = re.search(r'<tr data-job="render" data-state="(\w+)">(.*?)</tr>', dom)
    assert render is not None
    assert render.group(1) == "succeeded"
    assert job in render.group(2)
    assert 'data-series="tenant:whisper"' in dom
    assert 'data-series="job:render"' in dom
    assert re.search(r'<tr data-kind="\w+">.*?whisper', dom)  # the event log names it
    shot = tmp_path / "dashboard.png"
    dump_dom(page, tmp_path / "profile2", shot)
    assert shot.stat().st_size > 10_000
    keep = os.environ.get("GPUHERD_DASHBOARD_SHOT")
    if keep:
        shutil.copy(shot, keep)


def test_ui_forwards_a_local_token_protected_port_to_the_socket(broker: tuple[str, Path]) -> None:
    _, sock = broker
    ui = subprocess.Popen(
        gpuherd_argv("ui", "--no-browser", "--socket", str(sock)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert ui.stdout is not None
        url = json.loads(ui.stdout.readline())["url"]
        base, _, fragment = url.partition("/#token=")
        assert base.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=base) as anonymous:
            assert anonymous.get("/").status_code == 200
            assert anonymous.get("/v1/jobs").status_code == 401
            assert (
                anonymous.get("/v1/jobs", headers={"Authorization": "Bearer nope"}).status_code
                == 401
            )
            # The token alone, without the Bearer scheme, is refused too.
            assert anonymous.get("/v1/jobs", headers={"Authorization": fragment}).status_code == 401
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {fragment}"}) as client:
            later = {"name": "render", "not_before": time.time() + 3600}
            job = client.post("/v1/jobs", json=later).json()["id"]
            listed = client.get("/v1/jobs", params={"all": True}).json()
            # Through the socket, as this process's user: the owner is recorded.
            assert {j["id"]: j["owner_uid"] for j in listed}[job] == os.getuid()
            assert client.post(f"/v1/jobs/{job}/cancel").json() == {"state": "cancelled"}
            assert client.get("/v1/status").json()["engine"]["ok"] is True
    finally:
        ui.terminate()
        ui.wait(timeout=30)
    assert ui.returncode == 0, ui.stderr.read() if ui.stderr else ""


def test_ui_without_a_broker_says_so(tmp_path: Path) -> None:
    done = subprocess.run(
        gpuherd_argv("ui", "--no-browser", "--socket", str(tmp_path / "none.sock")),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 4
    assert "no broker answers" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
