"""The pytest fixtures of the suites on the real Docker engine (`make test` starts it and builds
images): the engine checked and swept, VPN names, daemons and the stand-ins' "tunnel", each
removed at teardown. tests/integration and tests/faults both use them; each suite's conftest.py
imports them by name."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.harness import (
    ENGINE_FAMILIES,
    GLUETUN_IMAGE,
    Daemon,
    build_daemon,
    docker,
    kill_daemon,
    remove_test_containers,
)
from testkit.internet import Internet
from testkit.internet import internet as running_internet


@pytest.fixture(scope="session", autouse=True)
def docker_engine() -> Iterator[None]:
    try:
        docker("info", timeout=20)
    except (AssertionError, OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"no Docker engine answers ({exc}); run `make test`, which starts one")
    for image in (*ENGINE_FAMILIES.values(), GLUETUN_IMAGE):
        if not docker("images", "-q", image):
            pytest.fail(f"stand-in image {image} missing; run `make images`")
    remove_test_containers()  # leftovers of an earlier, killed run
    yield
    remove_test_containers()


@pytest.fixture
def vpns() -> Iterator[tuple[str, str]]:
    """Two Gluetun container names of this test's own (the containers removed at teardown)."""
    suffix = uuid.uuid4().hex[:6]
    names = (f"gluetun-a-{suffix}", f"gluetun-b-{suffix}")
    yield names
    docker("rm", "-f", *names, check=False)


@pytest.fixture
def internet() -> Iterator[Internet]:
    """The stand-in Gluetuns' "tunnel" (testkit/internet.py), removed at teardown."""
    with running_internet() as net:
        yield net


@pytest.fixture
def make_daemon(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Daemon]]:
    """Build daemons whose engines carry this test's run label; all removed at teardown."""
    made: list[Daemon] = []

    def factory(start: bool = True, env: dict[str, str] | None = None, **sections: Any) -> Daemon:
        workdir = tmp_path / f"daemon{len(made)}"
        workdir.mkdir()
        daemon = build_daemon(workdir, env, **sections)
        made.append(daemon)
        return daemon.start() if start else daemon

    yield factory
    for daemon in made:
        kill_daemon(daemon)
        if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
            print(f"--- daemon log ({daemon.workdir}) ---\n{daemon.log()[-20000:]}")
    remove_test_containers()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
