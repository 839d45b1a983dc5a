"""The desired-state keys: every YAML key with its default and its check, and the typed config.

`SCHEMA` is the single list of keys (`config.example.yaml`, the README's reference table and the
loader are all checked against it); `ENV_OVERRIDES` maps the seed's environment variables onto
those keys. The checkers turn a raw YAML value into a typed one or raise `ValueError` with a
message the loader puts next to the file, line and key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from orchestrator.config.launch import parse_launch
from reconcilers.model import Desired, PortRange

Checker = Callable[[Any], Any]
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_IMAGE = "ghcr.io/krinkuto11/acestream-http-proxy:latest"


def _int(minimum: int, maximum: int = 2**31) -> Checker:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"expected an integer, got {v!r}")
        if not minimum <= v <= maximum:
            raise ValueError(f"must be between {minimum} and {maximum}, got {v}")
        return v

    return check


def _number(minimum: float) -> Checker:
    def check(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ValueError(f"expected a finite number, got {v!r}")
        if v < minimum:
            raise ValueError(f"must be at least {minimum:g}, got {v}")
        return float(v)

    return check


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"expected true or false, got {v!r}")
    return v


def _str(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"expected a non-empty string, got {v!r}")
    return v


def _label_value(v: Any) -> str:
    if not isinstance(v, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", v):
        raise ValueError(f"expected a name of letters, digits, '.', '_' or '-', got {v!r}")
    return v


def _optional_str(v: Any) -> str | None:
    return None if v is None else _str(v)


def _choice(*options: str) -> Checker:
    def check(v: Any) -> str:
        if v not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {v!r}")
        return str(v)

    return check


def _port_range(v: Any) -> PortRange:
    match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", str(v)) if isinstance(v, str) else None
    if not match:
        raise ValueError(f"expected a port range like 19000-19999, got {v!r}")
    start, end = int(match[1]), int(match[2])
    if not 1 <= start <= end <= 65535:
        raise ValueError(f"port range {v!r} must satisfy 1 <= start <= end <= 65535")
    return PortRange(start=start, end=end)


def _str_map(v: Any) -> dict[str, str]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ValueError(f"expected a mapping of names to values, got {v!r}")
    out = {}
    for key, value in v.items():
        if not isinstance(key, str) or isinstance(value, dict | list) or value is None:
            raise ValueError(f"entry {key!r}: expected a string name and a scalar value")
        out[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


# Labels the daemon writes itself (its memory, and the seed's names other tools read).
OWN_LABEL_PREFIX = "orchestrator."
SEED_LABELS = ("host.http_port", "acestream.forwarded")


def _user_labels(v: Any) -> dict[str, str]:
    labels = _str_map(v)
    own = sorted(k for k in labels if k.startswith(OWN_LABEL_PREFIX) or k in SEED_LABELS)
    if own:
        raise ValueError(
            f"{', '.join(own)}: the daemon writes these labels itself (its memory of "
            f"each engine); choose names outside {OWN_LABEL_PREFIX}*"
        )
    return labels


def _names(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(n, str) and n for n in v):
        raise ValueError(f"expected a list of container names, got {v!r}")
    if len(set(v)) != len(v):
        raise ValueError(f"container names must be distinct, got {v!r}")
    return tuple(v)


# section -> key -> (default, checker). The single source of truth for the YAML keys.
SCHEMA: dict[str, dict[str, tuple[Any, Checker]]] = {
    "engines": {
        "image": (DEFAULT_IMAGE, _str),
        "pool": ("default", _label_value),
        "min_replicas": (3, _int(0, 1000)),
        "min_free": (1, _int(0, 1000)),
        "max_replicas": (20, _int(1, 1000)),
        "address": ("name", _choice("name", "ip")),
        "host_port_range": ("19000-19999", _port_range),
        "idle_ttl_s": (600, _number(0)),
        "health_check_interval_s": (30, _number(0.5)),
        "ready_timeout_s": (120, _number(1)),
        "env": ({}, _str_map),
        "labels": ({}, _user_labels),
        "launch": ({"preset": "auto"}, parse_launch),
        "cache_limit_gb": (1, _int(1, 1000)),
    },
    "vpn": {
        "mode": ("none", _choice("none", "single", "redundant")),
        "containers": ([], _names),
        "api_port": (8000, _int(1, 65535)),
        "api_key": (None, _optional_str),
        "port_range": ("19000-19999", _port_range),
        "restart_engines_on_reconnect": (True, _bool),
        "unhealthy_restart_timeout_s": (60, _number(1)),
        "wait_healthy_s": (30, _number(0)),
        "health_check_interval_s": (5, _number(0.5)),
    },
    "api": {
        "host": ("0.0.0.0", _str),
        "port": (8000, _int(1, 65535)),
        "api_key": (None, _optional_str),
    },
    "log_level": {"": ("INFO", _choice(*LOG_LEVELS))},
}

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
    "ORCHESTRATOR_API_KEY": ("api.api_key", str),
}
CONTAINER_NAME_VARS = ("GLUETUN_CONTAINER_NAME", "GLUETUN_CONTAINER_NAME_2")


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiConfig:
    host: str = "0.0.0.0"
    port: int = 8000
    api_key: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    desired: Desired
    address: Literal["name", "ip"] = "name"
    vpn_api_port: int = 8000
    vpn_api_key: str | None = None
    vpn_poll_interval_s: float = 5.0
    engine_check_interval_s: float = 30.0
    api: ApiConfig = ApiConfig()
    log_level: str = "INFO"
