"""Fixtures for the sidecar tests (`make test` builds what they need: `make sidecar-image`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import pytest

from testkit.harness import ENGINE_IMAGE, GLUETUN_IMAGE, docker

DAEMON_IMAGE = os.environ.get("DAEMON_IMAGE", "acestream-orchestrator-test/orchestrator:latest")


@pytest.fixture(scope="session")
def daemon_image() -> str:
    """The daemon's image built from the repository's Dockerfile, plus the stand-in images."""
    try:
        docker("info", timeout=20)
    except (AssertionError, OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"no Docker engine answers ({exc}); run `make test`, which starts one")
    for image, make in ((DAEMON_IMAGE, "sidecar-image"), (ENGINE_IMAGE, "images"), (GLUETUN_IMAGE, "images")):
        if not docker("images", "-q", image):
            pytest.fail(f"image {image} missing; run `make {make}`")
    return DAEMON_IMAGE


@pytest.fixture(scope="session")
def compose_cli() -> str:
    """Debian's docker-compose (1.29): the Compose implementation the stacks are checked with."""
    path = shutil.which("docker-compose")
    if path is None:
        pytest.fail("docker-compose missing; run `make sidecar-image`, which installs it")
    return path


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item, so fixtures can print logs only on failure."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
