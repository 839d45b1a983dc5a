"""The Gluetun stand-in's control server (testbed/gluetun) served on this machine, without Docker.

The stand-in is busybox shell scripts; here they run under the host's busybox (every applet
linked into a private directory first on PATH, as in the image), with their state, health flag
and scripts in a temporary directory, listening on a free port of 127.0.0.1's host. So the
release table and the daemon's diagnosis of each release line are checked against the very
scripts the image runs, on a machine with no Docker engine. Skips (one line) without busybox.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"GET /v1/version HTTP/1.1\r\nHost: x\r\n\r\n")
            return s.recv(12).startswith(b"HTTP/1.1")
    except OSError:
        return False


@contextlib.contextmanager
def serve_standin(env: dict[str, str]) -> Iterator[str]:
    """Run the stand-in's entrypoint with `env` (STANDIN_RELEASE, STANDIN_API_KEY, ...);
    yields its control server's base URL and stops it (and every request process) after."""
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed: the Gluetun stand-in cannot be served locally")
    root = Path(tempfile.mkdtemp(prefix="gluetun-standin-"))
    applets, scripts = root / "applets", root / "bin"
    applets.mkdir()
    scripts.mkdir()
    subprocess.run([busybox, "--install", "-s", str(applets)], check=True)
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
    try:
        deadline = time.monotonic() + 10
        while not _answers(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"stand-in did not start: {(root / 'log').read_text()[-2000:]}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)
