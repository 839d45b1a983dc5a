"""Loading the desired state: the YAML file plus the seed's environment variables, validated.

Every key has a type, a default and a check (`schema`); a bad value is reported as one
`ConfigError` that names the file, the line and the dotted key, so an operator editing the file
in place sees at once what to fix. The environment variables of the original implementation keep
working and override the file (they are reported as `env VAR` when invalid).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from orchestrator.config.checks import SubKeyError, is_loopback_host
from orchestrator.config.launch import PRESETS, resolve_launch
from orchestrator.config.schema import (
    CONTAINER_NAME_VARS,
    ENV_OVERRIDES,
    NULL_MEANS_NONE,
    SCHEMA,
    SECRET_KEYS,
    ApiConfig,
    Config,
)
from orchestrator.errors import ConfigError
from reconcilers.model import Desired, EngineSpec, LaunchTemplate, TunnelProbe, VpnSpec
from reconcilers.ports import BANDS, usable_slots, vpn_share

# Ports Gluetun listens on in its own network namespace, which the engines behind it share.
GLUETUN_LISTENERS = {
    9999: "Gluetun's health server",
    8888: "Gluetun's HTTP proxy",
    8388: "Gluetun's Shadowsocks server",
}


def _lines_of(node: yaml.Node, prefix: str, out: dict[str, int]) -> None:
    """Record the line of every mapping key, by dotted path."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = f"{prefix}.{key_node.value}" if prefix else str(key_node.value)
            if path in out:
                raise ValueError(path, key_node.start_mark.line + 1)
            out[path] = key_node.start_mark.line + 1
            _lines_of(value_node, path, out)


# A document's nodes, each alias counted every time it is used: far more than any real
# configuration has, far fewer than an alias bomb ("billion laughs") expands to.
MAX_NODES = 100_000


def _refuse_alias_bombs(node: yaml.Node | None, source: str) -> None:
    """A few lines of nested aliases stand for billions of nodes: whatever walks them (the
    key lines below, the checks) would hang the daemon. Counted without recursion."""
    pending = [node] if node is not None else []
    for _ in range(MAX_NODES + 1):
        if not pending:
            return
        current = pending.pop()
        if isinstance(current, yaml.MappingNode):
            pending.extend(part for pair in current.value for part in pair)
        elif isinstance(current, yaml.SequenceNode):
            pending.extend(current.value)
    raise ConfigError(
        f"the document expands to more than {MAX_NODES} values (aliases used over and over?)", source=source
    )


MAX_FLOW_DEPTH = 64  # [ and { nested deeper than this are no configuration


def _flow_depth_over(text: str, limit: int) -> int | None:
    """The line where flow collections (`[`, `{`) nest deeper than `limit`, or None. A linear
    scan, outside quotes and comments: PyYAML's scanner takes time quadratic in the nesting
    (5,000 levels: seconds of the event loop's time) before it even fails."""
    depth = 0
    for number, line in enumerate(text.splitlines(), 1):
        quote = ""
        for index, char in enumerate(line):
            if quote:
                quote = "" if char == quote else quote
            elif char in "'\"":
                quote = char
            elif char == "#" and (index == 0 or line[index - 1] in " \t"):
                break
            elif char in "[{":
                depth += 1
                if depth > limit:
                    return number
            elif char in "]}":
                depth = max(0, depth - 1)
    return None


def _parse_yaml(text: str, source: str) -> tuple[dict[str, Any] | None, dict[str, int]]:
    """The top-level mapping (None: no document at all) and the line of every key."""
    too_deep = _flow_depth_over(text, MAX_FLOW_DEPTH)
    if too_deep is not None:
        raise ConfigError(
            f"invalid YAML: collections nested too deeply (over {MAX_FLOW_DEPTH} levels of [ or {{)",
            source=source,
            line=too_deep,
        )
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        _refuse_alias_bombs(node, source)
        data = yaml.safe_load(text)
    except RecursionError as exc:  # PyYAML composes nested collections by recursion
        raise ConfigError("invalid YAML: collections nested too deeply", source=source) from exc
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise ConfigError(f"invalid YAML: {exc.problem}", source=source, line=line) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", source=source) from exc
    if data is None:
        return None, {}
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping of sections", source=source, line=1)
    lines: dict[str, int] = {}
    if node is not None:
        try:
            _lines_of(node, "", lines)
        except ValueError as exc:
            key, line = exc.args
            raise ConfigError("duplicate key (it is given twice)", source=source, line=line, key=key) from exc
    return data, lines


def _env_layer(env: Mapping[str, str]) -> dict[str, tuple[Any, str]]:
    """Dotted key -> (value, source) for every seed variable that is set."""
    layer: dict[str, tuple[Any, str]] = {}
    for var, (key, parse) in ENV_OVERRIDES.items():
        raw = env.get(var)
        if raw is None or raw == "":
            continue
        try:
            layer[key] = (parse(raw), f"env {var}")
        except ValueError as exc:
            shown = "the value" if key in SECRET_KEYS else repr(raw)  # a secret is never quoted
            raise ConfigError(f"cannot parse {shown}", source=f"env {var}", key=key) from exc
    names = [env[v] for v in CONTAINER_NAME_VARS if env.get(v)]
    if names:
        layer["vpn.containers"] = (names, "env " + "/".join(CONTAINER_NAME_VARS))
        if "vpn.mode" not in layer:
            layer["vpn.mode"] = ("single" if len(names) == 1 else "redundant", "env GLUETUN_CONTAINER_NAME")
    return layer


def _given(data: dict[str, Any], lines: dict[str, int], source: str) -> dict[str, Any]:
    """Dotted key -> value for every key the file sets; unknown sections and keys are errors."""
    given: dict[str, Any] = {}
    for section, raw in data.items():
        keys = SCHEMA.get(section)
        if keys is None:
            raise ConfigError(
                f"unknown section (known: {', '.join(SCHEMA)})",
                source=source,
                line=lines.get(section),
                key=str(section),
            )
        if "" in keys:
            if raw is not None or section in NULL_MEANS_NONE:
                given[section] = raw
            continue
        if raw is None:
            continue
        if not isinstance(raw, dict):
            raise ConfigError("expected a mapping", source=source, line=lines.get(section), key=section)
        for key, value in raw.items():
            if key not in keys:
                raise ConfigError(
                    f"unknown key (known: {', '.join(keys)})",
                    source=source,
                    line=lines.get(f"{section}.{key}"),
                    key=f"{section}.{key}",
                )
            given[f"{section}.{key}"] = value
    return given


def _validated(
    data: dict[str, Any], lines: dict[str, int], source: str, env: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Checked values by dotted key, and where each came from (the file or `env VAR`)."""
    given = _given(data, lines, source)
    overrides = _env_layer(env)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for section, keys in SCHEMA.items():
        for key, (default, check) in keys.items():
            dotted = f"{section}.{key}" if key else section
            value, where, line = given.get(dotted, default), source, lines.get(dotted)
            if dotted in overrides:
                (value, where), line = overrides[dotted], None
            try:
                values[dotted] = check(value)
            except SubKeyError as exc:
                sub = f"{dotted}.{exc.key}"
                raise ConfigError(str(exc), source=where, line=lines.get(sub, line), key=sub) from exc
            except ValueError as exc:
                raise ConfigError(str(exc), source=where, line=line, key=dotted) from exc
            sources[dotted] = where
    return values, sources


def _blame(lines: dict[str, int], sources: dict[str, str]) -> Callable[..., ConfigError]:
    def fail(msg: str, key: str, *related: str) -> ConfigError:
        """Blame `key`; if the file does not write it, the first related key it does write
        (or that an environment variable set), else the section."""
        for candidate in (key, *related):
            if sources[candidate].startswith("env "):
                return ConfigError(msg, source=sources[candidate], key=candidate)
            if candidate in lines:
                return ConfigError(msg, source=sources[candidate], line=lines[candidate], key=key)
        return ConfigError(msg, source=sources[key], line=lines.get(key.partition(".")[0]), key=key)

    return fail


def _check_api_exposure(v: dict[str, Any], fail: Callable[..., ConfigError]) -> None:
    """No unauthenticated writes from other machines unless the operator says so."""
    host = v["api.host"]
    if v["api.api_key"] or v["api.allow_unauthenticated"] or is_loopback_host(host):
        return
    raise fail(
        f"api.host {host} lets other machines reach the API and api.api_key is not set: set "
        "api.api_key (or env ORCHESTRATOR_API_KEY), listen on 127.0.0.1, or set "
        "api.allow_unauthenticated: true to let anyone who reaches it end streams and provision",
        "api.api_key",
        "api.host",
        "api.allow_unauthenticated",
    )


def _cross_check(v: dict[str, Any], fail: Callable[..., ConfigError]) -> None:
    _check_api_exposure(v, fail)
    if v["engines.min_replicas"] > v["engines.max_replicas"]:
        raise fail(
            f"min_replicas ({v['engines.min_replicas']}) is above max_replicas ({v['engines.max_replicas']})",
            "engines.min_replicas",
            "engines.max_replicas",
        )
    mode, names = v["vpn.mode"], v["vpn.containers"]
    if mode == "none" and names:
        # a forgotten or lost `mode:` line must not put the engines on the host's own address
        raise fail(
            f"vpn.containers names {', '.join(names)} but vpn.mode is none (its default): engines would "
            "run without the VPN. Set vpn.mode to single or redundant, or empty vpn.containers",
            "vpn.mode",
            "vpn.containers",
        )
    unknown = sorted(set(v["vpn.forwarded_ports"]) - set(names))
    if unknown:
        raise fail(
            f"vpn.forwarded_ports names {', '.join(unknown)}, which vpn.containers does not list "
            f"({', '.join(names) or 'none'})",
            "vpn.forwarded_ports",
            "vpn.containers",
        )
    if mode == "single" and len(names) != 1:
        raise fail(f"mode single needs exactly one container, got {len(names)}", "vpn.containers", "vpn.mode")
    if mode == "redundant" and len(names) < 2:
        raise fail(
            f"mode redundant needs two or more containers, got {len(names)}", "vpn.containers", "vpn.mode"
        )
    if mode == "none":
        if v["engines.host_port_range"].size < v["engines.max_replicas"]:
            raise fail(
                f"{v['engines.host_port_range']} has fewer ports than max_replicas "
                f"({v['engines.max_replicas']})",
                "engines.host_port_range",
                "engines.max_replicas",
            )
        return
    port_range = v["vpn.port_range"]
    fits = sum(usable_slots(vpn_share(port_range, i, len(names))) for i in range(len(names)))
    if fits < v["engines.max_replicas"]:
        raise fail(
            f"{port_range} is too small for max_replicas={v['engines.max_replicas']}: each engine "
            f"needs {BANDS} ports (HTTP, HTTPS, API, P2P) in its VPN's share, so it fits {fits}",
            "vpn.port_range",
            "engines.max_replicas",
        )
    gluetun_ports = {
        v["vpn.api_port"]: "vpn.api_port, Gluetun's control server",
        **{p: why for p, why in GLUETUN_LISTENERS.items() if p != v["vpn.api_port"]},
    }
    taken = sorted(p for p in gluetun_ports if port_range.start <= p <= port_range.end)
    if taken:
        raise fail(
            f"{port_range} holds port(s) Gluetun itself listens on in the engines' network namespace: "
            + "; ".join(f"{p} ({gluetun_ports[p]})" for p in taken),
            "vpn.port_range",
            "vpn.api_port",
        )
    for name, port in sorted(v["vpn.forwarded_ports"].items()):
        if port_range.start <= port <= port_range.end:
            raise fail(
                f"{name}: forwarded port {port} lies inside vpn.port_range {port_range}, from which "
                "engines get their HTTP, HTTPS, API and P2P ports: another engine could be given it "
                "too. Forward a port outside the range",
                "vpn.forwarded_ports",
                "vpn.port_range",
            )
        if port in gluetun_ports:
            raise fail(
                f"{name}: forwarded port {port} is one Gluetun itself listens on ({gluetun_ports[port]})",
                "vpn.forwarded_ports",
            )


def _probe(v: dict[str, Any]) -> TunnelProbe | None:
    if v["target"] is None:
        return None
    host, port = v["target"]
    return TunnelProbe(
        host=host,
        port=port,
        interval_s=v["interval_s"],
        timeout_s=v["timeout_s"],
        retries=v["retries"],
        image=v["image"],
    )


def _launch_template(v: dict[str, Any], fail: Callable[..., ConfigError]) -> LaunchTemplate:
    template = resolve_launch(v["engines.launch"], v["engines.image"])
    if template is None:
        raise fail(
            f"cannot tell how to start image {v['engines.image']!r}: set engines.launch.preset to "
            f"one of {', '.join(PRESETS)}, or preset: custom with engines.launch.command, "
            "entrypoint and/or env (see docs/engine-images.md)",
            "engines.image",
            "engines.launch",
        )
    return template


def parse_config(
    text: str, *, source: str, env: Mapping[str, str] | None = None, allow_empty: bool = True
) -> Config:
    """`allow_empty=False`: a file with no keys at all is an error (the watcher's view: at run
    time an empty file is an editor half-way through a write, not "every key at its default")."""
    parsed, lines = _parse_yaml(text, source)
    if parsed is None and not allow_empty:
        raise ConfigError(
            "the file is empty (a write under way?); write `{}` to mean every key at its default",
            source=source,
        )
    data = parsed or {}
    v, sources = _validated(data, lines, source, os.environ if env is None else env)
    fail = _blame(lines, sources)
    _cross_check(v, fail)
    desired = Desired(
        engines=EngineSpec(
            image=v["engines.image"],
            launch=_launch_template(v, fail),
            cache_limit_gb=v["engines.cache_limit_gb"],
            pool=v["engines.pool"],
            min_replicas=v["engines.min_replicas"],
            min_free=v["engines.min_free"],
            max_replicas=v["engines.max_replicas"],
            idle_ttl_s=v["engines.idle_ttl_s"],
            ready_timeout_s=v["engines.ready_timeout_s"],
            host_port_range=v["engines.host_port_range"],
            env=v["engines.env"],
            labels=v["engines.labels"],
            log_max_size=v["engines.log_max_size"],
            log_max_files=v["engines.log_max_files"],
            stall_after_s=v["engines.stall_after_s"],
            stall_grace_s=v["engines.stall_grace_s"],
            max_age_s=v["engines.max_age_s"],
        ),
        vpn=VpnSpec(
            mode=v["vpn.mode"],
            containers=v["vpn.containers"] if v["vpn.mode"] != "none" else (),
            port_range=v["vpn.port_range"],
            restart_engines_on_reconnect=v["vpn.restart_engines_on_reconnect"],
            unhealthy_restart_timeout_s=v["vpn.unhealthy_restart_timeout_s"],
            wait_healthy_s=v["vpn.wait_healthy_s"],
            drain_grace_s=v["vpn.drain_grace_s"],
            probe=_probe(v["vpn.tunnel_probe"]),
        ),
    )
    return Config(
        desired=desired,
        address=v["engines.address"],
        vpn_api_port=v["vpn.api_port"],
        vpn_api_key=v["vpn.api_key"],
        vpn_api_user=v["vpn.api_user"],
        vpn_api_password=v["vpn.api_password"],
        vpn_forwarded_ports=v["vpn.forwarded_ports"],
        vpn_poll_interval_s=v["vpn.health_check_interval_s"],
        engine_check_interval_s=v["engines.health_check_interval_s"],
        stream_ttl_s=v["engines.stream_ttl_s"],
        max_streams_per_engine=v["engines.max_streams_per_engine"],
        pull=v["engines.pull"],
        pull_interval_s=v["engines.pull_interval_s"],
        restart_tunnel_on_stall=v["vpn.restart_tunnel_on_stall"],
        tunnel_restart_interval_s=v["vpn.tunnel_restart_interval_s"],
        api=ApiConfig(
            host=v["api.host"],
            port=v["api.port"],
            api_key=v["api.api_key"],
            allow_unauthenticated=v["api.allow_unauthenticated"],
        ),
        log_level=v["log_level"],
        state_dir=Path(v["state_dir"]) if v["state_dir"] else None,
    )


MAX_FILE_BYTES = 1024 * 1024


def load_config(path: Path, env: Mapping[str, str] | None = None, *, allow_empty: bool = True) -> Config:
    """Read and parse the file; never blocks on something that is not a plain file (a FIFO
    would hang the daemon) and never reads more than `MAX_FILE_BYTES`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as file:
            st = os.fstat(file.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise ConfigError("not a regular file", source=str(path))
            if st.st_size > MAX_FILE_BYTES:
                raise ConfigError(
                    f"the file is {st.st_size} bytes; at most {MAX_FILE_BYTES} are read", source=str(path)
                )
            raw = file.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise ConfigError(f"the file is over {MAX_FILE_BYTES} bytes", source=str(path))
        text = raw.decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror}", source=str(path)) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError("the file is not UTF-8 text", source=str(path)) from exc
    return parse_config(text, source=str(path), env=env, allow_empty=allow_empty)
