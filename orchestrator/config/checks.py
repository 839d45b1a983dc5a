"""Checkers for the desired-state YAML: each turns a raw value into a typed one, or raises
`ValueError` with a message the loader puts next to the file, line and key (`SubKeyError` when
the fault is one key inside a mapping, e.g. `vpn.tunnel_probe.interval_s`)."""

from __future__ import annotations

import datetime
import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from reconcilers.model import PortRange

Checker = Callable[[Any], Any]


class SubKeyError(ValueError):
    """A bad value inside a mapping-valued key, naming the inner key at fault."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class Section:
    """A mapping of known keys, each with its default and checker (`vpn.tunnel_probe`); `then`
    turns the checked dict into the value the config holds, checking keys against each other."""

    def __init__(
        self, fields: Mapping[str, tuple[Any, Checker]], then: Callable[[dict[str, Any]], Any] = dict
    ) -> None:
        self.fields = fields
        self._then = then

    def defaults(self) -> dict[str, Any]:
        return {key: default for key, (default, _) in self.fields.items()}

    def __call__(self, v: Any) -> Any:
        if v is None:
            v = {}
        if not isinstance(v, dict):
            raise ValueError(f"expected a mapping with {', '.join(self.fields)}, got {v!r}")
        unknown = sorted(str(k) for k in set(v) - set(self.fields))
        if unknown:
            raise SubKeyError(unknown[0], f"unknown key (known: {', '.join(self.fields)})")
        out: dict[str, Any] = {}
        for key, (default, checker) in self.fields.items():
            try:
                out[key] = checker(v.get(key, default))
            except SubKeyError as exc:
                raise SubKeyError(f"{key}.{exc.key}", str(exc)) from exc
            except ValueError as exc:
                raise SubKeyError(key, str(exc)) from exc
        return self._then(out)


def int_in(minimum: int, maximum: int = 2**31) -> Checker:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"expected an integer, got {v!r}")
        if not minimum <= v <= maximum:
            raise ValueError(f"must be between {minimum} and {maximum}, got {v}")
        return v

    return check


MAX_SECONDS = 366 * 86400.0  # every number key is a duration: a year is past any sensible one


def number(minimum: float, maximum: float = MAX_SECONDS) -> Checker:
    def check(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ValueError(f"expected a finite number, got {v!r}")
        if v < minimum:
            raise ValueError(f"must be at least {minimum:g}, got {v}")
        if v > maximum:
            raise ValueError(f"must be at most {maximum:g} (a year, in seconds), got {v:g}")
        return float(v)

    return check


def whole_seconds(minimum: int, maximum: int = int(MAX_SECONDS)) -> Checker:
    """A duration in whole seconds (busybox `nc -w` takes no fraction), as the float the model
    holds. A whole float (2.0) is taken: files written before this check existed say so, and a
    daemon left alone must not stop at an upgrade over it; a fraction is refused."""

    def check(v: Any) -> float:
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"expected whole seconds (an integer, no fraction), got {v!r}")
        if not minimum <= v <= maximum:
            raise ValueError(f"must be between {minimum} and {maximum} (whole seconds), got {v}")
        return float(v)

    return check


def boolean(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"expected true or false, got {v!r}")
    return v


def text(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"expected a non-empty string, got {v!r}")
    return v


def kind(v: Any) -> str:
    """What sort of value `v` is, never the value itself: for messages about secrets."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true or false"
    if isinstance(v, int | float):
        what = "an integer" if isinstance(v, int) else "a number"
        return f"{what} (YAML reads unquoted digits as a number: put the value in quotes)"
    if isinstance(v, str):
        return "a string" if v.strip() else "blanks only" if v else "an empty string"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, datetime.date):
        return "a date (put the value in quotes)"
    return f"a value of type {type(v).__name__}"


def secret(v: Any) -> str | None:
    """A key or password, or null (none). No message ever quotes the value, whatever is wrong
    with it: the error is logged, shown on `GET /status` and kept in the history."""
    if v is None:
        return None
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"expected a non-empty string, got {kind(v)}")
    return v


def label_value(v: Any) -> str:
    if not isinstance(v, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", v):
        raise ValueError(f"expected a name of letters, digits, '.', '_' or '-', got {v!r}")
    return v


def optional_number(minimum: float) -> Checker:
    """A number of seconds, or null (off)."""
    inner = number(minimum)

    def check(v: Any) -> float | None:
        return None if v is None else inner(v)

    return check


def optional_text(v: Any) -> str | None:
    return None if v is None else text(v)


def absolute_dir(v: Any) -> str | None:
    """An absolute directory path, or null (none: nothing kept across restarts)."""
    if v is None:
        return None
    if not isinstance(v, str) or not v.startswith("/") or "\0" in v:
        raise ValueError(f"expected an absolute path (or null for none), got {v!r}")
    return v


def choice(*options: str) -> Checker:
    def check(v: Any) -> str:
        if v not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {v!r}")
        return str(v)

    return check


def log_size(v: Any) -> str:
    """A size Docker's json-file log driver takes for `max-size`: a whole number and k, m or g."""
    if not isinstance(v, str) or not re.fullmatch(r"[1-9][0-9]{0,5}[kmg]", v):
        raise ValueError(f"expected a size like 10m (a whole number then k, m or g), got {v!r}")
    return v


def port_range(v: Any) -> PortRange:
    match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", str(v)) if isinstance(v, str) else None
    if not match:
        raise ValueError(f"expected a port range like 19000-19999, got {v!r}")
    start, end = int(match[1]), int(match[2])
    if not 1 <= start <= end <= 65535:
        raise ValueError(f"port range {v!r} must satisfy 1 <= start <= end <= 65535")
    return PortRange(start=start, end=end)


def str_map(v: Any) -> dict[str, str]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ValueError(f"expected a mapping of names to values, got {kind(v)}")  # values: no echo
    out = {}
    for key, value in v.items():
        if not isinstance(key, str) or isinstance(value, dict | list) or value is None:
            raise ValueError(f"entry {key!r}: expected a string name and a scalar value")
        out[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


# Labels the daemon writes itself (its memory, and the seed's names other tools read).
OWN_LABEL_PREFIX = "orchestrator."
SEED_LABELS = ("host.http_port", "acestream.forwarded")


def user_labels(v: Any) -> dict[str, str]:
    labels = str_map(v)
    own = sorted(k for k in labels if k.startswith(OWN_LABEL_PREFIX) or k in SEED_LABELS)
    if own:
        raise ValueError(
            f"{', '.join(own)}: the daemon writes these labels itself (its memory of "
            f"each engine); choose names outside {OWN_LABEL_PREFIX}*"
        )
    return labels


def names(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(n, str) and n for n in v):
        raise ValueError(f"expected a list of container names, got {v!r}")
    if len(set(v)) != len(v):
        raise ValueError(f"container names must be distinct, got {v!r}")
    return tuple(v)


# section -> key -> (default, checker). The single source of truth for the YAML keys.


def host_port(v: Any) -> tuple[str, int] | None:
    """`host:port` (an IPv4 address or a host name); empty or null: None (off)."""
    if v is None or v == "":
        return None
    match = (
        re.fullmatch(r"\s*(\[[0-9a-fA-F:.]+\]|[^\s:\[\]]+):(\d{1,5})\s*", v) if isinstance(v, str) else None
    )
    if not match or not 1 <= int(match[2]) <= 65535:
        raise ValueError(f"expected host:port (e.g. 1.1.1.1:443), or empty to turn it off, got {v!r}")
    if match[1].startswith("["):
        # a dial the tunnel cannot carry would read as a dead tunnel, forever
        raise ValueError(
            f"{v!r} is an IPv6 address: Gluetun's tunnels carry IPv4 (IPv6 only from v3.41.4 and "
            "only where the provider gives one); use an IPv4 address or a host name"
        )
    return match[1], int(match[2])


def port_map(v: Any) -> dict[str, int]:
    """Container name -> port."""
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ValueError(f"expected a mapping of VPN container names to ports, got {v!r}")
    out: dict[str, int] = {}
    for name, port in v.items():
        if (
            not isinstance(name, str)
            or isinstance(port, bool)
            or not isinstance(port, int)
            or not 1 <= port <= 65535
        ):
            raise ValueError(f"entry {name!r}: expected a container name and a port 1-65535, got {port!r}")
        out[name] = port
    return out


def is_loopback_host(host: str) -> bool:
    """True when only this machine can reach `host` as a listen address: `localhost` or a
    loopback IP (127.0.0.0/8, ::1). A wildcard (0.0.0.0, ::), any other IP and any other host
    name count as reachable from other machines."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback
