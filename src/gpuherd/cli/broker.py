"""`gpuherd serve` and the commands that talk to it: submit, status, jobs, events, cancel, logs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket as socket_mod
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from gpuherd.cli.common import (
    BackendOpt,
    ConfigOpt,
    Exit,
    SimDirOpt,
    fail,
    load_config_or_exit,
    open_backend_or_exit,
    stdout,
    write_out,
)

FINAL = ("succeeded", "failed", "cancelled")


def default_state() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "gpuherd"


def default_socket() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return Path(runtime) / "gpuherd.sock" if runtime else default_state() / "gpuherd.sock"


SocketOpt = Annotated[
    Path | None,
    typer.Option(
        "--socket",
        envvar="GPUHERD_SOCKET",
        show_default=False,
        help="Unix socket of the broker (default: $XDG_RUNTIME_DIR/gpuherd.sock).",
    ),
]
UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="GPUHERD_URL",
        help="Talk to a broker over TCP instead (needs --token-file).",
    ),
]
TokenOpt = Annotated[
    Path | None,
    typer.Option(
        "--token-file", envvar="GPUHERD_TOKEN_FILE", help="File holding the bearer token for TCP."
    ),
]


def _server_class() -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn re-raises SIGTERM after shutting down, which would skip our cleanup (engine
        stop, socket removal): gpuherd installs its own handlers instead."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server


def serve(
    config: ConfigOpt = None,
    backend: BackendOpt = "auto",
    sim_dir: SimDirOpt = None,
    state: Annotated[
        Path | None,
        typer.Option(
            "--state",
            help="Journal, job logs and results (default: $XDG_STATE_HOME/gpuherd).",
            show_default=False,
        ),
    ] = None,
    socket: SocketOpt = None,
    listen: Annotated[
        str | None,
        typer.Option("--listen", help="Also serve TCP on HOST:PORT; requires --token-file."),
    ] = None,
    token_file: TokenOpt = None,
) -> None:
    """Run the broker in the foreground: queue jobs, free VRAM for them, always restore."""
    import uvicorn

    from gpuherd.api.app import create_app

    _Server = _server_class()
    from gpuherd.broker.daemon import Daemon
    from gpuherd.broker.engine import Engine
    from gpuherd.broker.journal import Journal, JournalError

    spec = load_config_or_exit(config or Path("gpuherd.yaml"))
    token = _server_token(listen, token_file)
    state_dir = state or default_state()
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    state_dir.chmod(0o700)
    try:
        journal = Journal(state_dir / "journal.db")
    except (JournalError, sqlite3.Error) as exc:
        fail(f"{state_dir / 'journal.db'}: {exc}")
    engine = Engine(
        config=spec,
        backend=open_backend_or_exit(backend, sim_dir),
        journal=journal,
        state_dir=state_dir,
        poll=min(spec.broker.poll_interval, 0.05),  # waits on a release or restore
    )
    daemon = Daemon(engine, poll_interval=spec.broker.poll_interval)
    daemon.start()
    sock = socket or default_socket()
    sock.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    sock.unlink(missing_ok=True)
    old_umask = os.umask(0o177)  # the socket is born 0600: only this user may submit work
    try:
        host, _, port = (listen or "").rpartition(":")
        if listen:
            app_config = uvicorn.Config(
                create_app(daemon, token=token),
                host=host or "127.0.0.1",
                port=int(port),
                log_level="warning",
            )
        else:
            # Bound here, not by uvicorn, which would chmod the socket to 0666.
            listener = socket_mod.socket(socket_mod.AF_UNIX, socket_mod.SOCK_STREAM)
            listener.bind(str(sock))
            app_config = uvicorn.Config(
                create_app(daemon), fd=listener.fileno(), log_level="warning"
            )
        server = _Server(app_config)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: setattr(server, "should_exit", True))
        ready = {
            "event": "listening",
            "socket": None if listen else str(sock),
            "tcp": listen,
            "state": str(state_dir),
        }

        def announce() -> None:  # once the socket is bound, not before
            while not server.started and not server.should_exit:
                time.sleep(0.02)
            if server.started:
                print(json.dumps(ready), flush=True)
                # From here on, one JSON line per journal event (replay's included).
                daemon.log = lambda record: print(json.dumps(record), flush=True)
                daemon.wake()

        threading.Thread(target=announce, daemon=True).start()
        server.run()  # returns on SIGINT/SIGTERM
    finally:
        os.umask(old_umask)
        daemon.stop()
        sock.unlink(missing_ok=True)
        print(json.dumps({"event": "stopped"}), flush=True)


def _read_token(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        fail(f"--token-file {path}: {exc.strerror or exc}")


def _server_token(listen: str | None, token_file: Path | None) -> str | None:
    if listen is None:
        return None
    if token_file is None:
        fail("--listen needs --token-file: the broker runs commands, TCP is never open")
    token = _read_token(token_file)
    if len(token) < 16:
        fail(f"{token_file}: the token must be at least 16 characters")
    return token


def _client(socket: Path | None, url: str | None, token_file: Path | None) -> Any:
    import httpx

    if url:
        token = _read_token(token_file) if token_file else ""
        return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    path = socket or default_socket()
    return httpx.Client(
        transport=httpx.HTTPTransport(uds=str(path)), base_url="http://gpuherd", timeout=30
    )


def _call(
    socket: Path | None, url: str | None, token_file: Path | None, method: str, path: str, **kw: Any
) -> Any:
    import httpx

    try:
        with _client(socket, url, token_file) as client:
            response = client.request(method, path, **kw)
    except (httpx.ConnectError, FileNotFoundError):
        where = url or str(socket or default_socket())
        fail(
            f"no broker answers at {where}",
            hint="start one with: gpuherd serve -c gpuherd.yaml",
            code=Exit.NO_BROKER,
        )
    if response.status_code == 401:
        fail("the broker refused the token (--token-file)", code=Exit.USAGE)
    if response.status_code >= 400:
        detail = response.json().get("detail")
        message = detail
        if isinstance(detail, list):
            field = ".".join(str(x) for x in detail[0].get("loc", [])[1:])
            message = f"{field}: {detail[0]['msg']}" if field else detail[0]["msg"]
        fail(str(message), code=Exit.USAGE if response.status_code < 500 else Exit.FAILED)
    return response


def parse_when(text: str, *, now: float | None = None) -> float:
    """--not-before: "HH:MM" (the next such local time), an ISO date-time, or "+30m"."""
    from datetime import datetime, timedelta

    from gpuherd.units import UnitError, parse_duration

    now = time.time() if now is None else now
    base = datetime.fromtimestamp(now)
    try:
        if text.startswith("+"):
            return now + parse_duration(text[1:])
        if len(text) <= 5 and ":" in text:
            hour, minute = (int(x) for x in text.split(":"))
            at = base.replace(hour=hour, minute=minute, second=0, microsecond=0)
            return (at if at > base else at + timedelta(days=1)).timestamp()
        return datetime.fromisoformat(text).timestamp()
    except (UnitError, ValueError):
        fail(
            f"--not-before: cannot read {text!r}",
            hint='use "02:00" (next 2 AM), "2026-11-23T02:00" or "+30m"',
            code=Exit.USAGE,
        )


def submit(
    args: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="JOB | -- CMD...",
            help="A job name from the broker's config; with --gpu and --vram, the command to "
            "run ad hoc, after --.",
            show_default=False,
        ),
    ] = None,
    gpu: Annotated[str | None, typer.Option(help="Ad hoc: the GPU (a config name).")] = None,
    vram: Annotated[str | None, typer.Option(help='Ad hoc: VRAM it needs, e.g. "6GiB".')] = None,
    priority: Annotated[int, typer.Option(help="Ad hoc: priority (higher preempts lower).")] = 0,
    timeout: Annotated[str, typer.Option(help='Ad hoc: stop it after this, e.g. "30m".')] = "1h",
    name: Annotated[str, typer.Option("--name", help="Ad hoc: a label for it.")] = "adhoc",
    workdir: Annotated[
        str | None, typer.Option(help="Ad hoc: working directory (default: the state dir).")
    ] = None,
    not_before: Annotated[
        str | None,
        typer.Option(help='Do not start before "HH:MM", an ISO date-time, or "+30m" from now.'),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow it (state, time, GPU memory); exit as it did.")
    ] = False,
    socket: SocketOpt = None,
    url: UrlOpt = None,
    token_file: TokenOpt = None,
) -> None:
    """Queue a job and print its id.

    gpuherd submit render --wait

    gpuherd submit --gpu gpu0 --vram 6GiB --timeout 30m -- blender -b scene.blend -a

    Ad hoc jobs need broker.allow_adhoc: true in the broker's config.
    """
    argv = list(args or [])
    body: dict[str, Any]
    if gpu is None and vram is None:
        if len(argv) != 1:
            fail(
                "give one job name from the config, or --gpu and --vram with a command after --",
                code=Exit.USAGE,
            )
        body = {"name": argv[0]}
    else:
        if gpu is None or vram is None or not argv:
            fail("an ad hoc job needs --gpu, --vram and a command after --", code=Exit.USAGE)
        adhoc: dict[str, Any] = {"gpu": gpu, "vram": vram, "command": argv}
        adhoc |= {"priority": priority, "timeout": timeout}
        if workdir is not None:
            adhoc["workdir"] = str(Path(workdir).resolve())
        body = {"name": name, "adhoc": adhoc}
    if not_before is not None:
        body["not_before"] = parse_when(not_before)
    job_id = _call(socket, url, token_file, "POST", "/v1/jobs", json=body).json()["id"]
    print(job_id, flush=True)
    if not wait:
        return
    from gpuherd.units import format_bytes

    started = time.monotonic()
    while True:
        job = _call(socket, url, token_file, "GET", f"/v1/jobs/{job_id}").json()
        line = f"{job['state']:<10} {time.monotonic() - started:6.1f}s"
        if job.get("vram_used") is not None:
            line += f"  GPU memory {format_bytes(job['vram_used'])}"
        if job.get("reason") and job["state"] == "queued":
            line += f"  {job['reason']}"
        sys.stderr.write("\r" + line[:160].ljust(80))
        sys.stderr.flush()
        if job["state"] in FINAL:
            sys.stderr.write("\n")
            if job["state"] != "succeeded" and job.get("reason"):
                stdout.print(f"{job['state']}: {job['reason']}", markup=False)
            raise typer.Exit(int(Exit.OK if job["state"] == "succeeded" else Exit.FAILED))
        time.sleep(0.2)


def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    socket: SocketOpt = None,
    url: UrlOpt = None,
    token_file: TokenOpt = None,
) -> None:
    """GPUs, tenants (running/released/...) and jobs of the broker."""
    from gpuherd.units import format_bytes

    data = _call(socket, url, token_file, "GET", "/v1/status").json()
    if as_json:
        write_out(json.dumps(data, indent=2))
        return
    for g in data["gpus"]:
        mem = g["memory"]
        stdout.print(
            f"GPU {g['index']} {g['name']}: {format_bytes(mem['used'])} / "
            f"{format_bytes(mem['total'])} used",
            markup=False,
        )
    for t in data["tenants"]:
        stdout.print(f"tenant {t['name']}: {t['state']}", markup=False)
    for j in data["jobs"]:
        reason = f"  ({j['reason']})" if j.get("reason") else ""
        stdout.print(f"job {j['id']} {j['name']}: {j['state']}{reason}", markup=False)


def jobs(
    all_jobs: Annotated[bool, typer.Option("--all", help="Include ended jobs.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, with results.")] = False,
    socket: SocketOpt = None,
    url: UrlOpt = None,
    token_file: TokenOpt = None,
) -> None:
    """List jobs (queued and running; --all for every job)."""
    listed = _call(socket, url, token_file, "GET", "/v1/jobs", params={"all": all_jobs}).json()
    if as_json:
        write_out(json.dumps(listed, indent=2))
        return
    for j in listed:
        stdout.print(
            f"{j['id']}  {j['name']:<20} {j['state']:<10} {j.get('reason') or ''}", markup=False
        )


def events(
    since: Annotated[float, typer.Option("--since", help="Unix time to start from.")] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    socket: SocketOpt = None,
    url: UrlOpt = None,
    token_file: TokenOpt = None,
) -> None:
    """What the broker did, in order: submissions, releases, restores, outcomes."""
    listed = _call(socket, url, token_file, "GET", "/v1/events", params={"since": since}).json()
    if as_json:
        write_out(json.dumps(listed, indent=2))
        return
    for e in listed:
        when = time.strftime("%H:%M:%S", time.localtime(e["at"]))
        who = e["tenant"] or e["job"] or ""
        stdout.print(f"{when}  {e['kind']:<16} {who:<16} {e['message']}", markup=False)


def cancel(
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    socket: SocketOpt = None,
    url: UrlOpt = None,
    token_file: TokenOpt = None,
) -> None:
    """Cancel a queued job, or stop a running one (its tenants are restored)."""
    state = _call(socket, url, token_file, "POST", f"/v1/jobs/{job_id}/cancel").json()["state"]
    stdout.print(f"{job_id}: {state}", markup=False)


def logs(
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until it ends.")
    ] = False,
    socket: SocketOpt = None,
    url: UrlOpt = None,
    token_file: TokenOpt = None,
) -> None:
    """Print a job's output."""
    shown = 0
    while True:
        text = _call(socket, url, token_file, "GET", f"/v1/jobs/{job_id}/logs").text
        sys.stdout.write(text[shown:])
        sys.stdout.flush()
        shown = len(text)
        if not follow:
            return
        state = _call(socket, url, token_file, "GET", f"/v1/jobs/{job_id}").json()["state"]
        if state in FINAL:
            return
        time.sleep(0.5)
