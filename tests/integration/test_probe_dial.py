"""The tunnel probe's dial, run by a real shell against real netcats on loopback.

The probe's health check must tell three things apart: the target answered (0), the dial failed
(a dead tunnel: anything but 0, 126, 127), and an `nc` that cannot judge at all (126: the probe
is `probe_broken`). An `nc` without `-z` and `-e` used to exit 1, read as "tunnel down" forever,
which forced Gluetun restarts. Each netcat family is a directory put first on PATH: Debian's
busybox (`-e`, no `-z`), a minimal one knowing neither option (its usage error on stderr), and
none at all.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.docker.probes import CANNOT_DIAL, dial_command
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
    for tool in ("cat", "true"):
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


def _dial(path: Path, port: int) -> subprocess.CompletedProcess[str]:
    command = dial_command(TunnelProbe(host="127.0.0.1", port=port, timeout_s=1))
    return subprocess.run(
        [str(path / "sh"), "-c", command],
        env={"PATH": str(path)},
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def test_busybox_without_z_dials_with_e(tmp_path: Path, listener: int, closed_port: int) -> None:
    assert Path(BUSYBOX).exists(), "busybox-static is installed by scripts/ensure-docker.sh"
    family = _family(tmp_path, "busybox")
    assert _dial(family, listener).returncode == 0
    failed = _dial(family, closed_port)
    assert failed.returncode not in (0, 126, 127), failed


def test_an_nc_that_cannot_judge_is_broken_not_a_dead_tunnel(
    tmp_path: Path, listener: int, closed_port: int
) -> None:
    family = _family(tmp_path, "minimal")
    for port in (listener, closed_port):
        result = _dial(family, port)
        assert result.returncode == 126, result
        assert CANNOT_DIAL in result.stdout


def test_no_nc_at_all_cannot_run(tmp_path: Path, listener: int) -> None:
    assert _dial(_family(tmp_path, "none"), listener).returncode == 127
