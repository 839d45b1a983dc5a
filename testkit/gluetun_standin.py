"""The Gluetun stand-in's control server (testbed/gluetun) served on this machine, without Docker.

The stand-in is busybox shell scripts; here they run under the host's busybox (every applet
linked into a private directory first on PATH, as in the image), with their state, health flag
and scripts in a temporary directory, listening on a free port of 127.0.0.1's host. So the
release table and the daemon's diagnosis of each release line are checked against the very
scripts the image runs, on a machine with no Docker engine. Skips (one line) without busybox.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

import pytest

STANDIN_DIR = Path(__file__).resolve().parent.parent / "testbed" / "gluetun"
SCRIPTS = (
    "gluetun-lib",
    "gluetun-serve",
    "gluetun-run",
    "entrypoint.sh",
    "standin-health",
    "standin-vpn-status",
    "standin-public-ip",
    "standin-set-port",
    "standin-reconnect",
    "standin-crash",
)
K = TypeVar("K")


_GIVEN: set[int] = set()  # stand-ins started at once have not bound theirs yet: never twice


def _free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"GET /v1/version HTTP/1.1\r\nHost: x\r\n\r\n")
            return s.recv(12).startswith(b"HTTP/1.1")
    except OSError:
        return False


@functools.cache
def _applets() -> Path:
    """Every busybox applet linked into one directory, once per process (removed at exit)."""
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed: the Gluetun stand-in cannot be served locally")
    applets = Path(tempfile.mkdtemp(prefix="gluetun-standin-applets-"))
    subprocess.run([busybox, "--install", "-s", str(applets)], check=True)
    atexit.register(shutil.rmtree, applets, ignore_errors=True)
    return applets


@dataclass
class _StandIn:
    root: Path
    port: int
    log: IO[bytes]
    proc: subprocess.Popen[bytes]


def _start(env: dict[str, str]) -> _StandIn:
    applets = _applets()
    root = Path(tempfile.mkdtemp(prefix="gluetun-standin-"))
    scripts = root / "bin"
    scripts.mkdir()
    for name in SCRIPTS:
        text = (STANDIN_DIR / name).read_text()
        if text.startswith("#!"):
            text = f"#!{applets}/sh" + text[text.index("\n") :]
        (scripts / name).write_text(text)
        (scripts / name).chmod(0o755)
    port = _free_port()
    full = {
        "PATH": f"{scripts}:{applets}",
        "STANDIN_BIN": str(scripts),
        "STANDIN_STATE_DIR": str(root / "state"),
        "STANDIN_HEALTH_FILE": str(root / "healthy"),
        "HTTP_CONTROL_SERVER_ADDRESS": f":{port}",
        "STANDIN_RELEASE": "v3.41",
        "HTTP_CONTROL_SERVER_LOG": "off",
        **env,
    }
    log = (root / "log").open("wb")
    proc = subprocess.Popen(
        [str(scripts / "entrypoint.sh")],
        env=full,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return _StandIn(root, port, log, proc)


def _stop(standin: _StandIn) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(standin.proc.pid, signal.SIGKILL)
    standin.proc.wait()
    standin.log.close()
    shutil.rmtree(standin.root, ignore_errors=True)


@contextlib.contextmanager
def serve_standins(envs: Mapping[K, dict[str, str]]) -> Iterator[dict[K, str]]:
    """Run the stand-in's entrypoint once per environment in `envs` (STANDIN_RELEASE,
    STANDIN_API_KEY, ...), all started at once; yields each one's control server base URL (by
    the same key) and stops them (and every request process) after."""
    started: dict[K, _StandIn] = {}
    try:
        for key, env in envs.items():
            started[key] = _start(env)
        # each answer is a busybox shell started for it: seconds on a machine busy with other
        # suites (make test runs these tests beside the Docker ones)
        deadline = time.monotonic() + 30
        waiting = dict(started)
        while waiting:
            for key, standin in list(waiting.items()):
                if _answers(standin.port):
                    del waiting[key]
                elif standin.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"stand-in did not start: {(standin.root / 'log').read_text()[-2000:]}"
                    )
            if waiting:
                time.sleep(0.02)
        yield {key: f"http://127.0.0.1:{standin.port}" for key, standin in started.items()}
    finally:
        for standin in started.values():
            _stop(standin)
