"""Fixtures for tests against the real Docker engine: the kit's (testkit/fixtures.py)."""

from testkit.fixtures import (  # noqa: F401 (fixtures are found by name)
    docker_engine,
    internet,
    make_daemon,
    pytest_runtest_makereport,
    vpns,
)
