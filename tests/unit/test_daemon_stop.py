"""The daemon's clean stop (SIGTERM), Docker-free: everything the journal has queued, and the
confirmations not yet due, are on disk when `run()` returns, and the state directory's lock is
released for the next daemon (docs/state-journal.md). Docker is an address that refuses every
connection: the daemon runs (and backs off) without it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sqlite3
import time
from pathlib import Path

from structlog.testing import capture_logs

from orchestrator.config import parse_config
from orchestrator.daemon import Daemon
from orchestrator.state.journal import FILE, StreamJournal
from orchestrator.state.streams import Stream
from testkit.logs import logged

NO_DOCKER = "http://127.0.0.1:9"  # refuses at once
TTL = 21600.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def listening(port: int, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            assert time.monotonic() < deadline, "the daemon's API never listened"
            await asyncio.sleep(0.02)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


async def test_a_clean_stop_writes_everything_queued_and_releases_the_state_directory(tmp_path: Path) -> None:
    port = free_port()
    state = tmp_path / "state"
    text = (
        "engines: {image: engine:1, launch: {preset: acestream-http-proxy}, min_replicas: 0}\n"
        f"api: {{host: 127.0.0.1, port: {port}}}\n"
    )
    daemon = Daemon(parse_config(text, source="test", env={}), docker_url=NO_DOCKER, state_dir=state)
    run = asyncio.create_task(daemon.run(install_signal_handlers=True))
    await listening(port)
    assert daemon.store.state_error is None
    now = time.time()
    stream = Stream(id="s1", container_id="a", key_type="content_id", key="k", started_at=now - 60)
    daemon.store.demand.start_stream(stream)
    daemon.store.demand.confirm_streams(["s1"], now - 30, TTL)  # the first: written at once
    daemon.store.demand.confirm_streams(["s1"], now, TTL)  # not due for 5 minutes: only a stop writes it

    os.kill(os.getpid(), signal.SIGTERM)  # the handler run() installed sets its stop
    await asyncio.wait_for(run, timeout=15)

    with contextlib.closing(sqlite3.connect(state / FILE)) as db:
        assert db.execute("SELECT id, status FROM streams").fetchall() == [("s1", "started")]
        assert db.execute("SELECT id, at FROM confirmed").fetchall() == [("s1", now)]
    after = StreamJournal(state)  # the next daemon gets the directory
    try:
        assert after.open().active[0].confirmed_at == now
        assert after.error is None
    finally:
        after.close()


async def test_a_daemon_logs_api_listening_with_its_address_once_the_api_serves(tmp_path: Path) -> None:
    port = free_port()
    text = (
        "engines: {image: engine:1, launch: {preset: acestream-http-proxy}, min_replicas: 0}\n"
        f"api: {{host: 127.0.0.1, port: {port}}}\n"
    )
    daemon = Daemon(parse_config(text, source="test", env={}), docker_url=NO_DOCKER, state_dir=tmp_path)
    with capture_logs() as logs:
        run = asyncio.create_task(daemon.run(install_signal_handlers=True))
        await listening(port)
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(run, timeout=15)

    events = [entry["event"] for entry in logs]
    (listening_at,) = logged(logs, "api_listening")
    assert listening_at["log_level"] == "info"
    assert (listening_at["host"], listening_at["port"]) == ("127.0.0.1", port)
    assert events.index("daemon_starting") < events.index("api_listening") < events.index("daemon_stopped")
