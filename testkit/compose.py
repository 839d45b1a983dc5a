"""The compose stacks in compose/ as the sidecar suite and the soak read them: each stack resolved
by a real Compose implementation with its `.env.example` and the secrets an operator fills in,
the ports its services publish, and a free run of host ports for a stack brought up for real."""

from __future__ import annotations

import os
import random
import re
import socket
import subprocess
from typing import Any

import yaml

from orchestrator.config import CONTAINER_NAME_VARS, ENV_OVERRIDES
from reconcilers.model import PortRange
from testkit.harness import REPO

# the socket proxy's configuration in an image built from Debian's haproxy (testbed/)
SOCKET_PROXY_IMAGE = "acestream-orchestrator-test/socket-proxy:latest"

COMPOSE_DIR = REPO / "compose"
STACKS = sorted(p.parent.name for p in COMPOSE_DIR.glob("*/docker-compose.yml"))
SEED_VARS = {*ENV_OVERRIDES, *CONTAINER_NAME_VARS}
# what an operator must fill in before `up` (the stacks refuse to start without them)
SECRETS = {"GLUETUN_API_KEY": "test-control-key", "ORCHESTRATOR_API_KEY": "test-api-key"}


def env_example(stack: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (COMPOSE_DIR / stack / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f"{stack}/.env.example: not NAME=value: {line!r}"
            out[name.strip()] = value
    return out


def compose_config(cli: str, stack: str, extra_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` of a stack with its .env.example; variables the stack knows are
    taken out of this process's environment first (compose lets the shell override .env)."""
    known = set(env_example(stack))
    env = {k: v for k, v in os.environ.items() if k not in known} | extra_env
    return subprocess.run(
        [
            cli,
            "-f",
            str(COMPOSE_DIR / stack / "docker-compose.yml"),
            "--env-file",
            str(COMPOSE_DIR / stack / ".env.example"),
            "config",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def resolved(cli: str, stack: str) -> dict[str, Any]:
    done = compose_config(cli, stack, SECRETS)
    assert done.returncode == 0, f"{stack}: docker-compose config failed:\n{done.stderr}"
    assert "is not set" not in done.stderr, f"{stack}: {done.stderr}"
    return dict(yaml.safe_load(done.stdout))


def published(service: dict[str, Any]) -> dict[tuple[str, int], int]:
    """(host address, host port) -> container port of every port a service publishes (compose
    1.29 prints each port of a range on its own line, `127.0.0.1:19000:19000/tcp`)."""
    out: dict[tuple[str, int], int] = {}
    for entry in service.get("ports", []):
        match = re.fullmatch(r"(?:([\d.]+):)?(\d+):(\d+)(?:/tcp)?", str(entry))
        assert match, entry
        out[(match[1] or "0.0.0.0", int(match[2]))] = int(match[3])
    return out


def gluetun_services(services: dict[str, Any]) -> list[str]:
    return [name for name, svc in services.items() if "gluetun" in str(svc.get("image", ""))]


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def free_range(size: int) -> PortRange:
    """`size` consecutive free host ports, below the ephemeral range and away from the ranges
    other suites use (19000-19999, 29400-29509): the host's ports are shared with them."""
    for _ in range(200):
        start = random.randrange(21000, 29000, 64)
        if all(_bindable(p) for p in range(start, start + size)):
            return PortRange(start=start, end=start + size - 1)
    raise AssertionError(f"no {size} free consecutive ports found")
