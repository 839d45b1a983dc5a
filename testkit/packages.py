"""A Debian package a test needs, installed when the test runs alone.

`make test` installs every package the suites need first, in one apt run
(scripts/install-test-packages.sh): two apt-get runs at once fail on apt's lock. A test run by
itself installs what is missing the same way, a service of the package kept from starting.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

POLICY_RC = Path("/usr/sbin/policy-rc.d")


def ensure_package(command: str, package: str) -> None:
    """apt-get install `package` unless `command` is on PATH; the test fails when apt does."""
    if shutil.which(command) is not None:
        return
    made_policy = not POLICY_RC.exists()
    if made_policy:  # exit 101: invoke-rc.d starts no service during the install
        POLICY_RC.write_text("#!/bin/sh\nexit 101\n")
        POLICY_RC.chmod(0o755)
    try:
        done = subprocess.run(
            ["apt-get", "install", "-y", "-qq", package],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )
    finally:
        if made_policy:
            POLICY_RC.unlink()
    if done.returncode != 0:
        pytest.fail(f"apt-get install {package} failed: {done.stderr[-2000:]}")
