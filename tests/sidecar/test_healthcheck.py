"""The image's HEALTHCHECK script (docker/healthcheck.py): where it probes.

It must probe the address the running daemon listens on, read from the same YAML (the
`--config` of PID 1), and keep probing the right place while an operator's edit leaves the file
invalid, because the daemon keeps its last good configuration meanwhile.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from tests.integration.harness import REPO


@pytest.fixture(scope="module")
def healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("healthcheck", REPO / "docker" / "healthcheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("cmdline", "expected"),
    [
        (
            b"/opt/venv/bin/python3\0/opt/venv/bin/acestream-orchestrator\0--config\0/config/x.yaml\0",
            "/config/x.yaml",
        ),
        (b"python\0-m\0orchestrator\0--config=/etc/o.yaml\0--check\0", "/etc/o.yaml"),
        (b"sleep\0600\0", "/config/orchestrator.yaml"),
        (b"", "/config/orchestrator.yaml"),
    ],
)
def test_config_path_from_pid1(healthcheck: ModuleType, cmdline: bytes, expected: str) -> None:
    assert healthcheck.daemon_config_path(cmdline) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("api:\n  port: 9100\n", ("127.0.0.1", 9100)),  # wildcard host: loopback
        ("api:\n  host: 10.1.2.3\n  port: 9100\n", ("10.1.2.3", 9100)),
        ("api:\n  host: '::1'\n", ("[::1]", 8000)),
        ("", ("127.0.0.1", 8000)),  # every default
        ("api:\n  port: 9100\nengines:\n  min_replicas: many\n", ("127.0.0.1", 9100)),  # invalid edit
        ("api: [\n", ("127.0.0.1", 8000)),  # not even YAML
    ],
)
def test_api_address(healthcheck: ModuleType, tmp_path: Path, text: str, expected: tuple[str, int]) -> None:
    path = tmp_path / "orchestrator.yaml"
    path.write_text(text)
    assert healthcheck.api_address(path) == expected


def test_missing_file_probes_the_default(healthcheck: ModuleType, tmp_path: Path) -> None:
    assert healthcheck.api_address(tmp_path / "absent.yaml") == ("127.0.0.1", 8000)
