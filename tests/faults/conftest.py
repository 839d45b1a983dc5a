"""The fault suite runs on the same real-Docker fixtures as tests/integration
(testkit/fixtures.py), plus a Docker API proxy that injects faults (`testkit/docker_proxy.py`)."""

from collections.abc import Iterator

import pytest

from testkit.docker_proxy import DockerProxy, running_proxy
from testkit.fixtures import (  # noqa: F401 (fixtures are found by name)
    docker_engine,
    make_daemon,
    pytest_runtest_makereport,
    vpns,
)


@pytest.fixture
def docker_proxy() -> Iterator[DockerProxy]:
    """A fault-injecting proxy of the Docker socket: `make_daemon(env=docker_proxy.env)`."""
    with running_proxy() as proxy:
        yield proxy
