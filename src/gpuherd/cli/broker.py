"""`gpuherd serve` and the commands that talk to it: submit, status, jobs, events, cancel, logs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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

if TYPE_CHECKING:
    from gpuherd.api.client import Client
    from gpuherd.api.server import BrokerServer
    from gpuherd.broker.service import Broker

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


def serve(  # noqa: PLR0912, PLR0915 - one linear start-up sequence
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
        typer.Option(
            "--listen",
            help="Also serve TCP on HOST:PORT ([::1]:PORT for IPv6); needs --token-file.",
        ),
    ] = None,
    token_file: TokenOpt = None,
    socket_group: Annotated[
        str | None,
        typer.Option(
            "--socket-group",
            help="Make the socket 0660 and owned by this group (name or gid): its members may "
            "submit, list and cancel their own jobs; others get permission denied.",
        ),
    ] = None,
    http: Annotated[
        str | None,
        typer.Option(
            "--http",
            help="Also serve the API and the web dashboard on HOST:PORT, besides the socket; "
            "needs --token-file (open http://HOST:PORT/#token=TOKEN).",
        ),
    ] = None,
    kubernetes: Annotated[
        bool,
        typer.Option(
            "--kubernetes",
            help="Kubernetes mode: tenants from annotated workloads on this node, admission of "
            "suspended Jobs labelled gpuherd.io/queue; -c is optional.",
        ),
    ] = False,
    kubeconfig: Annotated[
        Path | None,
        typer.Option(
            "--kubeconfig",
            envvar="KUBECONFIG",
            help="With --kubernetes: the cluster (default: in-cluster service account).",
        ),
    ] = None,
    node: Annotated[
        str | None,
        typer.Option("--node", envvar="NODE_NAME", help="With --kubernetes: this node's name."),
    ] = None,
    accept_journal_loss: Annotated[
        bool,
        typer.Option(
            "--accept-journal-loss",
            help="Start even though the journal is not the one this broker last wrote, or lost "
            "its last writes (a deleted or truncated WAL). Tenants of the config not running "
            "on this host whose method can start them (signal with start, command) are "
            "restored; every other doubt is a journal_loss_check event to act on.",
        ),
    ] = False,
    proc_root: Annotated[
        Path | None,
        typer.Option("--proc-root", hidden=True, help="Read /proc under this directory."),
    ] = None,
    gpu_index: Annotated[
        list[int] | None,
        typer.Option("--gpu-index", hidden=True, help="With --kubernetes: only these GPUs."),
    ] = None,
) -> None:
    """Run the broker in the foreground: queue jobs, free VRAM for them, always restore."""
    from gpuherd.actuators.factory import unavailable_kinds
    from gpuherd.api.server import ListenError, claim_socket
    from gpuherd.broker.continuity import JournalLost, check_mark
    from gpuherd.broker.daemon import Daemon
    from gpuherd.broker.engine import Engine
    from gpuherd.broker.journal import Journal, JournalError
    from gpuherd.broker.service import Broker
    from gpuherd.broker.statelock import StateLocked, lock_state

    kube = None
    if kubernetes:  # GPUs from the backend, tenants and jobs from the cluster
        from gpuherd.cli.kube import open_mode

        kube = open_mode(
            config_path=config,
            kubeconfig=kubeconfig,
            node=node,
            proc_root=proc_root,
            gpu_indices=gpu_index,
            backend=open_backend_or_exit(backend, sim_dir),
        )
    cfg = (
        kube.config
        if kube
        else load_config_or_exit(config or Path("gpuherd.yaml"), methods=unavailable_kinds())
    )
    token = _server_token(listen or http, token_file)
    gid = _group_id(socket_group)
    state_dir = state or default_state()
    try:
        if not state_dir.exists():  # an existing, maybe shared, directory keeps its mode
            state_dir.mkdir(parents=True, mode=0o700)
            state_dir.chmod(0o700)
        state_lock = lock_state(state_dir)  # noqa: F841 - held until the process exits
    except StateLocked as exc:
        fail(str(exc), code=Exit.USAGE)
    except OSError as exc:
        fail(f"--state {state_dir}: {exc.strerror or exc}", code=Exit.USAGE)
    lost = False
    try:
        journal = Journal(state_dir / "journal.db")
        check_mark(state_dir, journal)
    except JournalLost as exc:
        if not accept_journal_loss:
            fail(
                str(exc),
                hint="restore the state dir from a backup, or start with --accept-journal-loss "
                "and check every tenant by hand (gpuherd status)",
                code=Exit.USAGE,
            )
        journal.record("journal_loss_accepted", str(exc))
        lost = True
    except (JournalError, sqlite3.Error, OSError) as exc:
        fail(f"{state_dir / 'journal.db'}: {exc}", code=Exit.USAGE)
    engine = Engine(
        config=cfg,
        backend=open_backend_or_exit(backend, sim_dir),
        journal=journal,
        state_dir=state_dir,
        poll=min(cfg.broker.poll_interval, 0.05),  # waits on a release or restore
        launcher=None if kube is None else kube.launcher,
    )
    if lost:  # what the host alone can tell is journaled for recovery; the rest, as events
        from gpuherd.broker.rebuild import rebuild

        rebuild(cfg, journal, engine.backend.snapshot())
    daemon = Daemon(
        engine, poll_interval=cfg.broker.poll_interval, sample_interval=cfg.broker.guard_sample
    )
    if kube is not None:
        kube.start(daemon, journal)
    broker = Broker(daemon)
    sock = socket or default_socket()
    if not listen:
        try:
            sock.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            claim_socket(sock)
        except ListenError as exc:
            fail(str(exc), code=Exit.USAGE)
        except OSError as exc:
            fail(f"--socket {sock}: {exc.strerror or exc}", code=Exit.USAGE)
    server, web = _servers(
        broker, sock=None if listen else sock, listen=listen, http=http, token=token, gid=gid
    )
    daemon.on_fatal = lambda _why: server.request_stop()
    daemon.start()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: server.request_stop())
    if web is not None:
        web.start()
    ready = {
        "event": "listening",
        "socket": None if listen else str(sock),
        "tcp": listen,
        "state": str(state_dir),
    }
    if http is not None:
        ready["http"] = http

    def announce() -> None:  # once the socket is bound, not before
        if server.wait_started(timeout=float("inf")):
            print(json.dumps(ready), flush=True)
            # From here on, one JSON line per journal event (replay's included).
            daemon.log = lambda record: print(json.dumps(record), flush=True)
            daemon.wake()

    threading.Thread(target=announce, daemon=True).start()
    try:
        server.run()  # returns on SIGINT/SIGTERM
    finally:
        if web is not None:
            web.stop()
        daemon.stop()
        if kube is not None:
            kube.close()
        journal.close()
        stopped = {"event": "stopped"} | ({"error": daemon.fatal} if daemon.fatal else {})
        print(json.dumps(stopped), flush=True)
    if daemon.fatal is not None:
        fail(f"the engine stopped: {daemon.fatal}", code=Exit.FAILED)


def _servers(
    broker: Broker,
    *,
    sock: Path | None,
    listen: str | None,
    http: str | None,
    token: str | None,
    gid: int | None,
) -> tuple[BrokerServer, BrokerServer | None]:
    """The API on the socket (or --listen), and with --http a second listener with the page."""
    from gpuherd.api.server import BrokerServer, ListenError

    try:
        server = BrokerServer(
            broker, socket_path=sock, listen=listen, token=token, socket_group=gid, static=True
        )
        web = None if http is None else BrokerServer(broker, listen=http, token=token, static=True)
    except ListenError as exc:
        fail(str(exc), code=Exit.USAGE)
    except OSError as exc:
        fail(f"--socket {sock}: {exc.strerror or exc}")
    return server, web


def _group_id(group: str | None) -> int | None:
    """--socket-group: a group name or a numeric gid."""
    import grp

    if group is None:
        return None
    try:
        return grp.getgrgid(int(group)).gr_gid if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        fail(f"--socket-group {group}: no such group", hint=f"create it: groupadd {group}")


def _read_token(path: Path) -> str:
    try:
        if path.stat().st_mode & 0o077:
            fail(
                f"--token-file {path}: readable by others; the token lets anyone run commands",
                hint=f"chmod 600 {path}",
                code=Exit.USAGE,
            )
        return path.read_text().strip()
    except OSError as exc:
        fail(f"--token-file {path}: {exc.strerror or exc}")


def _server_token(listen: str | None, token_file: Path | None) -> str | None:
    if listen is None:
        return None
    if token_file is None:
        fail("--listen and --http need --token-file: the broker runs commands, TCP is never open")
    token = _read_token(token_file)
    if len(token) < 16:
        fail(f"{token_file}: the token must be at least 16 characters")
    return token


@contextlib.contextmanager
def _client(socket: Path | None, url: str | None, token_file: Path | None) -> Iterator[Client]:
    """The API client, with its errors mapped to messages and exit codes."""
    from gpuherd.api.client import BrokerRefused, BrokerUnreachable, Client

    token = _read_token(token_file) if url and token_file else None
    try:
        with Client(socket=socket or default_socket(), url=url, token=token) as client:
            yield client
    except BrokerUnreachable as exc:
        fail(str(exc), hint="start one with: gpuherd serve -c gpuherd.yaml", code=Exit.NO_BROKER)
    except BrokerRefused as exc:
        fail(exc.message, code=Exit.USAGE if exc.status < 500 else Exit.FAILED)


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
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            help="Idempotency key: submitting again with the same key returns the same job id "
            "instead of queueing it twice (safe to retry after a timeout).",
        ),
    ] = None,
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
    with _client(socket, url, token_file) as client:
        job_id = client.submit(body, key=key)
        print(job_id, flush=True)
        if wait:
            _follow(client, job_id)


def _follow(client: Client, job_id: str) -> None:
    """The live state line of `submit --wait`; exits as the job did."""
    from gpuherd.units import format_bytes

    started = time.monotonic()
    while True:
        job = client.job(job_id)
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

    with _client(socket, url, token_file) as client:
        data = client.status()
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
        parked = t.get("host_ram") or 0
        where = f" ({format_bytes(parked)} in host RAM)" if parked else ""
        if t.get("workload"):  # Kubernetes mode: the workload it scales, as the watch sees it
            seen = f": {t['workload_state']}" if t.get("workload_state") else ""
            where += f"  [{t['workload']}{seen}]"
        stdout.print(f"tenant {t['name']}: {t['state']}{where}", markup=False)
    for j in data["jobs"]:
        reason = f"  ({j['reason']})" if j.get("reason") else ""
        stdout.print(f"job {j['id']} {j['name']}: {j['state']}{reason}", markup=False)
    for g in data.get("guard", []):
        held = f", holding {', '.join(g['released'])} released" if g["released"] else ""
        flaps = (
            f"; FLAPPING ({g['releases_last_hour']} releases in the last hour: "
            f"{', '.join(g['flapping'])})"
            if g["flapping"]
            else ""
        )
        stdout.print(
            f"guard {g['gpu']}: keeps {format_bytes(g['min_free'])} free{held}{flaps}",
            markup=False,
        )


def jobs(
    all_jobs: Annotated[bool, typer.Option("--all", help="Include ended jobs.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, with results.")] = False,
    socket: SocketOpt = None,
    url: UrlOpt = None,
    token_file: TokenOpt = None,
) -> None:
    """List jobs (queued and running; --all for every job)."""
    with _client(socket, url, token_file) as client:
        listed = client.jobs(include_ended=all_jobs)
    if as_json:
        write_out(json.dumps(listed, indent=2))
        return
    for j in listed:
        owner = _user_name(j.get("owner_uid"))
        stdout.print(
            f"{j['id']}  {j['name']:<20} {owner:<10} {j['state']:<10} {j.get('reason') or ''}",
            markup=False,
        )


def _user_name(uid: int | None) -> str:
    """Who submitted a job: the user name of its uid; "-" for scheduled and TCP jobs."""
    import pwd

    if uid is None:
        return "-"
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def events(
    since: Annotated[float, typer.Option("--since", help="Unix time to start from.")] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    socket: SocketOpt = None,
    url: UrlOpt = None,
    token_file: TokenOpt = None,
) -> None:
    """What the broker did, in order: submissions, releases, restores, outcomes."""
    with _client(socket, url, token_file) as client:
        listed = client.events(since=since)
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
    with _client(socket, url, token_file) as client:
        state = client.cancel(job_id)
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
    with _client(socket, url, token_file) as client:
        _print_logs(client, job_id, follow=follow)


def _print_logs(client: Client, job_id: str, *, follow: bool) -> None:
    shown = 0
    while True:
        text = client.logs(job_id)
        sys.stdout.write(text[shown:])
        sys.stdout.flush()
        shown = len(text)
        if not follow:
            return
        state = client.job(job_id)["state"]
        if state in FINAL:
            return
        time.sleep(0.5)
