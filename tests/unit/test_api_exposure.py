"""No unauthenticated writes from other machines by default (docs/security.md).

Without `api.api_key`, a listen address other machines can reach is refused at load (start-up
and every reload) unless `api.allow_unauthenticated: true` says so; the one-line error names the
key to set. The daemon as a process exits 2 with that line.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.config import parse_config
from orchestrator.config.checks import is_loopback_host
from orchestrator.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def parse(text: str, **env: str) -> None:
    parse_config(text, source="o.yaml", env=env)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("fd00::2", False),
        ("myhost.lan", False),
        ("localhost.evil.example", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize(
    ("api", "env", "refused"),
    [
        ("{}", {}, False),  # the default: loopback
        ("{host: 127.0.0.1}", {}, False),
        ("{host: '::1'}", {}, False),
        ("{host: 0.0.0.0}", {}, True),
        ("{host: '::'}", {}, True),
        ("{host: 192.168.1.10}", {}, True),
        ("{host: 0.0.0.0, allow_unauthenticated: false}", {}, True),
        ("{host: 0.0.0.0, api_key: k}", {}, False),
        ("{host: 0.0.0.0}", {"ORCHESTRATOR_API_KEY": "k"}, False),  # the seed's variable
        ("{host: 0.0.0.0}", {"ORCHESTRATOR_API_KEY": ""}, True),  # empty: unset, as compose passes it
        ("{host: 0.0.0.0, allow_unauthenticated: true}", {}, False),
    ],
)
def test_exposure_without_a_key_is_refused(api: str, env: dict[str, str], refused: bool) -> None:
    text = f"api: {api}\n"
    if not refused:
        parse(text, **env)
        return
    with pytest.raises(ConfigError) as caught:
        parse(text, **env)
    message = str(caught.value)
    assert "\n" not in message
    assert "api.api_key" in message and "allow_unauthenticated" in message
    assert caught.value.key == "api.api_key"


def test_allow_unauthenticated_must_be_a_boolean() -> None:
    with pytest.raises(ConfigError, match=r"api\.allow_unauthenticated"):
        parse("api: {allow_unauthenticated: 'yes'}\n")


def test_the_daemon_refuses_to_start_exposed_without_a_key(tmp_path: Path) -> None:
    config = tmp_path / "orchestrator.yaml"
    config.write_text("api:\n  host: 0.0.0.0\n  port: 18999\nstate_dir: null\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}

    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "--config", str(config)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 2, done
    # the JSON log event, then the one line for a human
    lines = [line for line in done.stderr.splitlines() if not line.startswith("{")]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"acestream-orchestrator: {config}:2: api.api_key:"), lines[0]
    assert "api.host 0.0.0.0" in lines[0]
