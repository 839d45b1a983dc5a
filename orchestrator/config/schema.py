"""The desired-state keys: every YAML key with its default and its check, and the typed config.

`SCHEMA` is the single list of keys (`config.example.yaml`, the key table in docs/configuration.md and the
loader are all checked against it); `ENV_OVERRIDES` maps the seed's environment variables onto
those keys. The checkers (`checks`) turn a raw YAML value into a typed one or raise `ValueError`
with a message the loader puts next to the file, line and key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from orchestrator.config.checks import (
    Checker,
    Section,
    absolute_dir,
    boolean,
    choice,
    host_port,
    int_in,
    label_value,
    log_size,
    names,
    number,
    optional_number,
    optional_text,
    port_map,
    port_range,
    secret,
    str_map,
    text,
    user_labels,
    whole_seconds,
)
from orchestrator.config.launch import LAUNCH
from reconcilers.model import Desired

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_IMAGE = "ghcr.io/krinkuto11/acestream-http-proxy:latest"
DEFAULT_STATE_DIR = "/var/lib/acestream-orchestrator"


TUNNEL_PROBE = Section(
    {
        "target": ("1.1.1.1:443", host_port),
        "interval_s": (1.5, number(0.5)),
        "timeout_s": (1, whole_seconds(1)),
        "retries": (2, int_in(1, 10)),
        "image": (None, optional_text),
    }
)

SCHEMA: dict[str, dict[str, tuple[Any, Checker]]] = {
    "engines": {
        "image": (DEFAULT_IMAGE, text),
        "pool": ("default", label_value),
        "min_replicas": (3, int_in(0, 1000)),
        "min_free": (1, int_in(0, 1000)),
        "max_replicas": (20, int_in(1, 1000)),
        "address": ("name", choice("name", "ip")),
        "host_port_range": ("19000-19999", port_range),
        "idle_ttl_s": (600, number(0)),
        "health_check_interval_s": (60, number(0.5)),
        "ready_timeout_s": (120, number(1)),
        "env": ({}, str_map),
        "labels": ({}, user_labels),
        "launch": (LAUNCH.defaults(), LAUNCH),
        "cache_limit_gb": (1, int_in(1, 1000)),
        "stream_ttl_s": (21600, number(60)),
        "max_streams_per_engine": (20, int_in(1, 1000)),
        "log_max_size": ("10m", log_size),
        "log_max_files": (3, int_in(1, 100)),
        "stall_after_s": (60, number(5)),
        "stall_grace_s": (120, number(0)),
        "pull": ("missing", choice("missing", "always", "periodic")),
        "pull_interval_s": (3600, number(1)),
        "max_age_s": (None, optional_number(10)),
    },
    "vpn": {
        "mode": ("none", choice("none", "single", "redundant")),
        "containers": ([], names),
        "api_port": (8000, int_in(1, 65535)),
        "api_key": (None, secret),
        "api_user": (None, secret),
        "api_password": (None, secret),
        "forwarded_ports": ({}, port_map),
        "port_range": ("19000-19999", port_range),
        "restart_engines_on_reconnect": (True, boolean),
        "unhealthy_restart_timeout_s": (300, number(1)),
        "wait_healthy_s": (60, number(0)),
        "drain_grace_s": (1800, number(0)),
        "restart_tunnel_on_stall": (False, boolean),
        "tunnel_restart_interval_s": (3600, number(10)),
        "health_check_interval_s": (120, number(0.5)),
        "tunnel_probe": (TUNNEL_PROBE.defaults(), TUNNEL_PROBE),
    },
    "api": {
        "host": ("127.0.0.1", text),
        "port": (8000, int_in(1, 65535)),
        "api_key": (None, secret),
        "allow_unauthenticated": (False, boolean),
    },
    "log_level": {"": ("INFO", choice(*LOG_LEVELS))},
    "state_dir": {"": (DEFAULT_STATE_DIR, absolute_dir)},
}

# The keys and passwords: checked by `secret`, whose messages never quote the value (a refused
# file is logged, shown on GET /status and kept in the history). The loader quotes no raw value
# of theirs either (an environment variable it cannot parse).
SECRET_KEYS = frozenset(
    f"{section}.{key}"
    for section, keys in SCHEMA.items()
    for key, (_, check) in keys.items()
    if check is secret
)

# top-level keys whose `null` is a value of its own (elsewhere null means the default)
NULL_MEANS_NONE = frozenset({"state_dir"})


def schema_leaves() -> dict[str, Any]:
    """Every key a file can set, dotted (`engines.image`, `vpn.tunnel_probe.target`, `log_level`),
    with its default: what config.example.yaml and docs/configuration.md document, one by one."""
    leaves: dict[str, Any] = {}
    for section_name, keys in SCHEMA.items():
        for key, (default, check) in keys.items():
            dotted = f"{section_name}.{key}" if key else section_name
            if isinstance(check, Section):
                leaves |= {f"{dotted}.{sub}": d for sub, d in check.defaults().items()}
            else:
                leaves[dotted] = default
    return leaves


# Seed variable -> (dotted key, parser of the raw string).
ENV_OVERRIDES: dict[str, tuple[str, Callable[[str], Any]]] = {
    "VPN_MODE": ("vpn.mode", str.lower),
    "GLUETUN_API_PORT": ("vpn.api_port", int),
    "GLUETUN_HEALTH_CHECK_INTERVAL_S": ("vpn.health_check_interval_s", float),
    "VPN_RESTART_ENGINES_ON_RECONNECT": (
        "vpn.restart_engines_on_reconnect",
        lambda s: {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(
            s.strip().lower(), s
        ),
    ),
    "VPN_UNHEALTHY_RESTART_TIMEOUT_S": ("vpn.unhealthy_restart_timeout_s", float),
    "MAX_ACTIVE_REPLICAS": ("engines.max_replicas", int),
    "LOG_LEVEL": ("log_level", str.upper),
    # secrets are better kept out of the mounted YAML: these two take them from the environment
    "GLUETUN_API_KEY": ("vpn.api_key", str),
    "GLUETUN_API_USER": ("vpn.api_user", str),
    "GLUETUN_API_PASSWORD": ("vpn.api_password", str),
    "ORCHESTRATOR_API_KEY": ("api.api_key", str),
}
CONTAINER_NAME_VARS = ("GLUETUN_CONTAINER_NAME", "GLUETUN_CONTAINER_NAME_2")


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    # without a key, a listen address other machines can reach is refused unless this is true
    allow_unauthenticated: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    desired: Desired
    address: Literal["name", "ip"] = "name"
    vpn_api_port: int = 8000
    vpn_api_key: str | None = None
    vpn_api_user: str | None = None
    vpn_api_password: str | None = None
    # static forwards (providers where Gluetun negotiates none): VPN container name -> port
    vpn_forwarded_ports: Mapping[str, int] = field(default_factory=dict)
    vpn_poll_interval_s: float = 120.0
    engine_check_interval_s: float = 60.0
    stream_ttl_s: float = 21600.0
    max_streams_per_engine: int = 20
    # engines.pull: missing (pull only an image not there), always (at start and before each
    # rollout a new config calls for), periodic (that, and every pull_interval_s)
    pull: Literal["missing", "always", "periodic"] = "missing"
    pull_interval_s: float = 3600.0
    # vpn_exit_stalling: ask Gluetun for another exit through its control server (never the
    # container), at most once per tunnel_restart_interval_s per VPN
    restart_tunnel_on_stall: bool = False
    tunnel_restart_interval_s: float = 3600.0
    api: ApiConfig = ApiConfig()
    log_level: str = "INFO"
    state_dir: Path | None = Path(DEFAULT_STATE_DIR)  # None: streams kept in memory only
