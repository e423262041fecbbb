"""The server in-process: socket born 0600, the process umask untouched, clients over it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gpuherd.api.client import BrokerRefused, BrokerUnreachable, Client
from gpuherd.api.server import BrokerServer, ListenError, parse_listen
from gpuherd.broker.daemon import Daemon
from gpuherd.broker.engine import Engine
from gpuherd.broker.journal import Journal
from gpuherd.broker.service import Broker
from gpuherd.gpu.sim import SimBackend
from gpuherd.spec import parse_config


def test_socket_is_private_and_the_umask_is_left_alone(sim_dir: Path, tmp_path: Path) -> None:
    """Before, serve set umask 0177 for the socket and never put it back: every job and every
    restored tenant ran with it (a non-root job's `mkdir out && touch out/f` failed)."""
    config = parse_config(
        "version: 1\ngpus: [{name: gpu0, index: 0}]\njobs:\n  j: {gpu: gpu0, vram: 1GiB, command: [x]}\n",
        source="g.yaml",
    )
    engine = Engine(
        config=config,
        backend=SimBackend(sim_dir),
        journal=Journal(tmp_path / "journal.db"),
        state_dir=tmp_path,
    )
    daemon = Daemon(engine, poll_interval=0.05)
    sock = tmp_path / "gpuherd.sock"
    before = os.umask(0o022)
    try:
        server = BrokerServer(Broker(daemon), socket_path=sock)
        after = os.umask(0o022)
        daemon.start()
        server.start()
        try:
            assert after == 0o022
            assert stat.S_IMODE(sock.stat().st_mode) == 0o600
            with Client(socket=sock) as client:
                job_id = client.submit({"name": "j"}, key="k1")
                assert client.submit({"name": "j"}, key="k1") == job_id
                with pytest.raises(BrokerRefused) as refused:
                    client.submit({"name": "nope"})
                assert (refused.value.status, refused.value.message) == (
                    404,
                    "name: no job named 'nope' in the config",
                )
        finally:
            server.stop()
            daemon.stop()
            engine.journal.close()
    finally:
        os.umask(before)
    assert not sock.exists()
    with pytest.raises(BrokerUnreachable), Client(socket=sock) as client:
        client.status()


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen("[::1]:8080") == ("::1", 8080)
    assert parse_listen(":9000") == ("127.0.0.1", 9000)
    for bad in ("localhost", "host:http", "[::1]:70000"):
        with pytest.raises(ListenError, match="expected HOST:PORT"):
            parse_listen(bad)
