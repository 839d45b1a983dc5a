"""The tunnel probe's dial loop, run by a real shell against real netcats on loopback.

The probe's loop must tell three things apart: the target answered (`tunnel up`), the dial
failed (`tunnel down`), and an `nc` that cannot judge at all (`probe broken`: the VPN shows
`probe_broken`). The host's shell is dash (no `read -t`: the loop waits with `sleep`); the
stand-in Gluetun's busybox ash (`read -t` on a FIFO) runs it in
tests/integration/test_tunnel_probe.py. An `nc` without `-z` and `-e` used to exit 1, read as
"tunnel down" forever, which forced Gluetun restarts. Each netcat family is a directory put
first on PATH: Debian's busybox (`-e`, no `-z`), a minimal one knowing neither option (its usage
error on stderr), and none at all.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.docker.probes import BROKEN, CANNOT_DIAL, DOWN, NO_NC, UP, loop_command, parse_verdict
from reconcilers.model import TunnelProbe

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
# the host's POSIX shell: a static busybox's own shell prefers its applets to PATH, so it would
# run its nc whatever the folder holds
SHELL = "/bin/sh"

# a netcat that knows neither -z nor -e (as some minimal builds): usage error, exit 1
MINIMAL_NC = """#!/bin/sh
for a in "$@"; do
  case $a in -z|-e)
    echo "nc: invalid option -- '${a#-}'" >&2; echo "Usage: nc [-w SEC] HOST PORT" >&2; exit 1;;
  esac
done
exec BUSYBOX nc "$@"
"""


def _family(tmp: Path, name: str) -> Path:
    folder = tmp / name
    folder.mkdir()
    (folder / "sh").symlink_to(SHELL)
    for tool in ("cat", "true", "sleep", "mkfifo", "rm"):
        (folder / tool).symlink_to(BUSYBOX)
    if name == "busybox":
        (folder / "nc").symlink_to(BUSYBOX)
    elif name == "minimal":
        (folder / "nc").write_text(MINIMAL_NC.replace("BUSYBOX", BUSYBOX))
        (folder / "nc").chmod(0o755)
    return folder


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once it is closed


def _first_verdict(path: Path, port: int) -> str:
    """Run the probe's loop until it writes its first line; that line."""
    command = loop_command(TunnelProbe(host="127.0.0.1", port=port, timeout_s=1, interval_s=0.5, retries=2))
    with subprocess.Popen(
        [str(path / "sh"), "-c", command],
        env={"PATH": str(path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as loop:
        try:
            assert loop.stdout is not None
            return loop.stdout.readline().strip()
        finally:
            loop.terminate()
            loop.wait(timeout=10)


def test_busybox_without_z_dials_with_e(tmp_path: Path, listener: int, closed_port: int) -> None:
    assert Path(BUSYBOX).exists(), "busybox-static is installed by scripts/ensure-docker.sh"
    family = _family(tmp_path, "busybox")
    assert _first_verdict(family, listener) == UP
    assert _first_verdict(family, closed_port) == DOWN
    assert parse_verdict(UP) == (True, None) and parse_verdict(DOWN) == (False, None)


def test_an_nc_that_cannot_judge_is_broken_not_a_dead_tunnel(
    tmp_path: Path, listener: int, closed_port: int
) -> None:
    family = _family(tmp_path, "minimal")
    for port in (listener, closed_port):
        line = _first_verdict(family, port)
        assert line == BROKEN + CANNOT_DIAL, line
        assert parse_verdict(line) == (None, CANNOT_DIAL)


def test_no_nc_at_all_is_broken(tmp_path: Path, listener: int) -> None:
    assert _first_verdict(_family(tmp_path, "none"), listener) == BROKEN + NO_NC


def test_a_blip_shorter_than_the_timeout_hides_nothing(tmp_path: Path) -> None:
    """The target refuses for 0.3 s (a dial fails at once) and answers again: the next dial is a
    whole `timeout_s` after the failed one, so the two failures that make "down" cannot both
    land in the blip."""
    family = _family(tmp_path, "busybox")
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    command = loop_command(TunnelProbe(host="127.0.0.1", port=port, timeout_s=1, interval_s=0.2, retries=2))
    with subprocess.Popen(
        [str(family / "sh"), "-c", command],
        env={"PATH": str(family)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as loop:
        try:
            assert loop.stdout is not None
            assert loop.stdout.readline().strip() == UP
            for _ in range(5):  # five blips, each somewhere else in the dial cycle
                server.close()
                time.sleep(0.3)
                server = socket.socket()
                server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                server.bind(("127.0.0.1", port))
                server.listen(8)
                time.sleep(1.3)
        finally:
            loop.terminate()
            server.close()
        said = loop.communicate(timeout=10)[0]
    assert DOWN not in said, said
