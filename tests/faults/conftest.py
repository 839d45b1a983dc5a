"""The fault suite runs on the same real-Docker fixtures as tests/integration."""

from tests.integration.conftest import (  # noqa: F401 (fixtures are found by name)
    docker_engine,
    make_daemon,
    pytest_runtest_makereport,
    vpns,
)
