"""The desired-state YAML and the seed's environment variables (orchestrator/config.py).

Every bad input must give one ConfigError whose text names where (file and line, or `env VAR`)
and which dotted key, so an operator can fix it without reading code.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.config import DEFAULT_IMAGE, ApiConfig, Config, load_config, parse_config
from orchestrator.config.launch import PRESETS
from orchestrator.docker.probes import loop_command
from orchestrator.errors import ConfigError
from reconcilers.model import Desired, EngineSpec, LaunchTemplate, PortRange, TunnelProbe, VpnSpec

SRC = "conf/orchestrator.yaml"


def parse(text: str, **env: str) -> Config:
    return parse_config(text, source=SRC, env=env)


def test_empty_text_gives_all_defaults() -> None:
    assert parse("") == Config(
        desired=Desired(
            engines=EngineSpec(image=DEFAULT_IMAGE, launch=PRESETS["acestream-http-proxy"]),
            vpn=VpnSpec(probe=TunnelProbe(host="1.1.1.1", port=443)),
        ),
        address="name",
        vpn_api_port=8000,
        vpn_api_key=None,
        vpn_poll_interval_s=120.0,
        api=ApiConfig(host="127.0.0.1", port=8000, api_key=None),
        log_level="INFO",
    )


@pytest.mark.parametrize(
    "text",
    ["# only a comment\n", "engines:\nvpn:\napi:\n", "engines: {}\nvpn: {}\n"],
    ids=["comment_only", "null_sections", "empty_sections"],
)
def test_empty_sections_give_defaults(text: str) -> None:
    assert parse(text) == parse("")


def test_every_key_is_read() -> None:
    cfg = parse(
        "engines:\n"
        "  image: my/engine:2\n"
        "  min_replicas: 2\n"
        "  min_free: 0\n"
        "  max_replicas: 6\n"
        "  address: ip\n"
        "  host_port_range: 25000-25009\n"
        "  idle_ttl_s: 30\n"
        "  env: {CONF: '--x', BIND_ALL: true, N: 3}\n"
        "  labels: {team: media}\n"
        "  launch: {preset: custom, command: [run, '--http-port={http_port}']}\n"
        "  cache_limit_gb: 3\n"
        "vpn:\n"
        "  mode: redundant\n"
        "  containers: [gluetun, gluetun2]\n"
        "  api_port: 8001\n"
        "  api_key: vpnkey\n"
        "  port_range: 20000-20599\n"
        "  restart_engines_on_reconnect: false\n"
        "  unhealthy_restart_timeout_s: 90\n"
        "  wait_healthy_s: 10.5\n"
        "  health_check_interval_s: 2\n"
        "api:\n"
        "  host: 127.0.0.1\n"
        "  port: 9000\n"
        "  api_key: secret\n"
        "log_level: DEBUG\n"
    )
    assert cfg == Config(
        desired=Desired(
            engines=EngineSpec(
                image="my/engine:2",
                launch=LaunchTemplate(preset="custom", command=("run", "--http-port={http_port}"), env={}),
                cache_limit_gb=3,
                min_replicas=2,
                min_free=0,
                max_replicas=6,
                idle_ttl_s=30.0,
                host_port_range=PortRange(start=25000, end=25009),
                env={"CONF": "--x", "BIND_ALL": "true", "N": "3"},
                labels={"team": "media"},
            ),
            vpn=VpnSpec(
                mode="redundant",
                containers=("gluetun", "gluetun2"),
                port_range=PortRange(start=20000, end=20599),
                restart_engines_on_reconnect=False,
                unhealthy_restart_timeout_s=90.0,
                wait_healthy_s=10.5,
                probe=TunnelProbe(host="1.1.1.1", port=443),
            ),
        ),
        address="ip",
        vpn_api_port=8001,
        vpn_api_key="vpnkey",
        vpn_poll_interval_s=2.0,
        api=ApiConfig(host="127.0.0.1", port=9000, api_key="secret"),
        log_level="DEBUG",
    )


@dataclass(frozen=True, kw_only=True)
class Bad:
    id: str
    text: str
    line: int
    key: str | None
    says: str  # a fragment of the message


SINGLE_G = "vpn:\n  mode: single\n  containers: [gluetun]\n"

BAD_FILES = [
    Bad(
        id="yaml_unclosed_flow_list",
        text="engines:\n  min_replicas: 3\n  max_replicas: [1, 2\nvpn:\n  mode: none\n",
        line=4,
        key=None,
        says="invalid YAML",
    ),
    Bad(
        id="yaml_bad_indentation",
        text="engines:\n  image: foo\n bad: 1\n",
        line=3,
        key=None,
        says="invalid YAML",
    ),
    Bad(id="yaml_tab_indent", text="engines:\n\tmin_replicas: 3\n", line=2, key=None, says="invalid YAML"),
    Bad(
        id="top_level_not_a_mapping",
        text="- engines\n- vpn\n",
        line=1,
        key=None,
        says="top level must be a mapping",
    ),
    Bad(
        id="unknown_section",
        text="engines:\n  min_replicas: 3\nproxy:\n  port: 1\n",
        line=3,
        key="proxy",
        says="unknown section",
    ),
    Bad(
        id="duplicate_key",
        text="engines:\n  min_replicas: 3\n  min_replicas: 4\n",
        line=3,
        key="engines.min_replicas",
        says="duplicate key",
    ),
    Bad(
        id="unknown_key",
        text="engines:\n  min_replicas: 3\n  replicas: 4\n",
        line=3,
        key="engines.replicas",
        says="unknown key",
    ),
    Bad(
        id="unknown_key_in_later_section",
        text="engines:\n  min_free: 1\nvpn:\n  mod: single\n",
        line=4,
        key="vpn.mod",
        says="unknown key",
    ),
    Bad(
        id="section_not_a_mapping",
        text="log_level: INFO\nengines: 3\n",
        line=2,
        key="engines",
        says="expected a mapping",
    ),
    Bad(
        id="int_given_text",
        text="engines:\n  min_replicas: three\n",
        line=2,
        key="engines.min_replicas",
        says="expected an integer",
    ),
    Bad(
        id="int_given_bool",
        text="engines:\n  max_replicas: true\n",
        line=2,
        key="engines.max_replicas",
        says="expected an integer",
    ),
    Bad(
        id="int_negative", text="engines:\n  min_free: -1\n", line=2, key="engines.min_free", says="between 0"
    ),
    Bad(
        id="number_given_text",
        text="engines:\n  idle_ttl_s: soon\n",
        line=2,
        key="engines.idle_ttl_s",
        says="expected a finite number",
    ),
    Bad(
        id="bool_given_text",
        text="vpn:\n  restart_engines_on_reconnect: sometimes\n",
        line=2,
        key="vpn.restart_engines_on_reconnect",
        says="true or false",
    ),
    Bad(
        id="empty_image", text="engines:\n  image: ''\n", line=2, key="engines.image", says="non-empty string"
    ),
    Bad(
        id="bad_choice",
        text="vpn:\n  mode: double\n",
        line=2,
        key="vpn.mode",
        says="one of none, single, redundant",
    ),
    Bad(
        id="bad_address",
        text="engines:\n  address: dns\n",
        line=2,
        key="engines.address",
        says="one of name, ip",
    ),
    Bad(id="bad_log_level", text="log_level: verbose\n", line=1, key="log_level", says="one of DEBUG"),
    Bad(
        id="log_size_with_a_space",
        text="engines:\n  image: x\n  log_max_size: 10 MB\n",
        line=3,
        key="engines.log_max_size",
        says="a size like 10m",
    ),
    Bad(
        id="log_size_a_number",
        text="engines:\n  log_max_size: 10\n",
        line=2,
        key="engines.log_max_size",
        says="10m",
    ),
    Bad(
        id="log_files_zero",
        text="engines:\n  log_max_files: 0\n",
        line=2,
        key="engines.log_max_files",
        says="between 1",
    ),
    Bad(id="env_not_a_mapping", text="engines:\n  env: [A, B]\n", line=2, key="engines.env", says="mapping"),
    Bad(
        id="env_nested_value",
        text="engines:\n  env:\n    A: {b: c}\n",
        line=2,
        key="engines.env",
        says="scalar value",
    ),
    Bad(
        id="containers_not_a_list",
        text="vpn:\n  mode: single\n  containers: gluetun\n",
        line=3,
        key="vpn.containers",
        says="list of container names",
    ),
    Bad(
        id="containers_repeated",
        text="vpn:\n  mode: redundant\n  containers: [g, g]\n",
        line=3,
        key="vpn.containers",
        says="distinct",
    ),
    Bad(
        id="min_above_max",
        text="engines:\n  min_replicas: 5\n  max_replicas: 4\n",
        line=2,
        key="engines.min_replicas",
        says="above max_replicas",
    ),
    *[
        Bad(
            id=f"malformed_port_range_{name}",
            text=f"vpn:\n  port_range: {value}\n",
            line=2,
            key="vpn.port_range",
            says="port range",
        )
        for name, value in [
            ("colon", "19000:19999"),
            ("reversed", "19999-19000"),
            ("zero_start", "0-100"),
            ("above_65535", "19000-70000"),
            ("word", "lots"),
            ("single_int", "19000"),
            ("list", "[19000, 19999]"),
        ]
    ],
    Bad(
        id="malformed_host_port_range",
        text="engines:\n  host_port_range: 19000-\n",
        line=2,
        key="engines.host_port_range",
        says="port range",
    ),
    Bad(
        id="vpn_port_range_too_small_for_max_replicas",
        text="engines:\n  max_replicas: 20\n" + SINGLE_G + "  port_range: 19000-19050\n",
        line=6,
        key="vpn.port_range",
        says="too small for max_replicas=20",
    ),
    Bad(
        id="redundant_shares_too_small",
        text="vpn:\n  mode: redundant\n  containers: [g1, g2]\n  port_range: 19000-19053\n",
        line=4,
        key="vpn.port_range",
        says="fits 12",
    ),
    Bad(
        id="host_port_range_too_small",
        text="engines:\n  host_port_range: 19000-19009\n",
        line=2,
        key="engines.host_port_range",
        says="fewer ports than max_replicas",
    ),
    # a forgotten `mode:` line (its default is none) would run the engines without the VPN
    Bad(
        id="containers_without_a_mode",
        text="vpn:\n  containers: [gluetun]\n",
        line=2,
        key="vpn.mode",
        says="vpn.containers names gluetun but vpn.mode is none (its default): engines would run without",
    ),
    Bad(
        id="containers_with_mode_none",
        text="vpn:\n  mode: none\n  containers: [gluetun]\n",
        line=2,
        key="vpn.mode",
        says="but vpn.mode is none",
    ),
    Bad(
        id="forwarded_port_of_a_vpn_not_listed",
        text=SINGLE_G + "  forwarded_ports:\n    gluten: 51820\n",
        line=4,
        key="vpn.forwarded_ports",
        says="vpn.forwarded_ports names gluten, which vpn.containers does not list (gluetun)",
    ),
    Bad(
        id="single_with_no_container",
        text="vpn:\n  mode: single\n  containers: []\n",
        line=3,
        key="vpn.containers",
        says="exactly one container, got 0",
    ),
    Bad(
        id="single_with_two_containers",
        text="vpn:\n  mode: single\n  containers: [a, b]\n",
        line=3,
        key="vpn.containers",
        says="exactly one container, got 2",
    ),
    Bad(
        id="redundant_with_one_container",
        text="vpn:\n  mode: redundant\n  containers: [a]\n",
        line=3,
        key="vpn.containers",
        says="two or more",
    ),
    Bad(
        id="forwarded_port_inside_the_engines_port_range",
        text=SINGLE_G + "  port_range: 19000-19999\n  forwarded_ports:\n    gluetun: 19001\n",
        line=5,
        key="vpn.forwarded_ports",
        says="forwarded port 19001 lies inside vpn.port_range 19000-19999",
    ),
    Bad(
        id="forwarded_port_on_gluetuns_control_server",
        text=SINGLE_G + "  forwarded_ports:\n    gluetun: 8000\n",
        line=4,
        key="vpn.forwarded_ports",
        says="Gluetun itself listens on",
    ),
    Bad(
        id="probe_target_ipv6_the_tunnel_may_not_carry",
        text=SINGLE_G + "  tunnel_probe:\n    target: '[2606:4700::1111]:443'\n",
        line=5,
        key="vpn.tunnel_probe.target",
        says="IPv6",
    ),
    # busybox `nc -w` takes whole seconds: a fraction used to be rounded by the dial loop, so
    # 2.5 waited 2 s and a blip shorter than the documented one hid engines
    *[
        Bad(
            id=f"probe_timeout_{name}",
            text=SINGLE_G + f"  tunnel_probe:\n    timeout_s: {value}\n",
            line=5,
            key="vpn.tunnel_probe.timeout_s",
            says=says,
        )
        for name, value, says in [
            ("fraction", "2.5", "expected whole seconds (an integer, no fraction), got 2.5"),
            ("half_a_second", "0.5", "expected whole seconds (an integer, no fraction), got 0.5"),
            ("just_over_one", "1.001", "expected whole seconds"),
            ("exponent", "1e1", "expected whole seconds"),
            ("zero", "0", "must be between 1 and"),
            ("negative", "-1", "must be between 1 and"),
            ("text", "two", "expected whole seconds"),
            ("bool", "true", "expected whole seconds"),
            ("infinite", ".inf", "expected whole seconds"),
        ]
    ],
]


def test_a_whole_float_probe_timeout_is_taken_as_before() -> None:
    # accepted before fractions were refused: an unattended daemon must not stop at the upgrade
    probe = parse(SINGLE_G + "  tunnel_probe:\n    timeout_s: 2.0\n").desired.vpn.probe
    assert probe is not None and probe.timeout_s == 2.0
    assert "nc -z -w 2 " in loop_command(probe)


@pytest.mark.parametrize("bad", BAD_FILES, ids=lambda b: b.id)
def test_bad_file_names_file_line_and_key(bad: Bad) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(bad.text)
    err = caught.value
    where = f"{SRC}:{bad.line}: "
    assert str(err).startswith(where + (f"{bad.key}: " if bad.key else "")), str(err)
    assert (err.source, err.line, err.key) == (SRC, bad.line, bad.key)
    assert bad.says in str(err)


@pytest.mark.parametrize(
    ("text", "env", "line"),
    [
        ("engines:\n  max_replicas: 2\n", {}, 2),
        ("log_level: INFO\nvpn:\n  mode: single\n", {}, 3),
    ],
    ids=["max_below_default_min", "single_without_containers_key"],
)
def test_cross_check_error_points_at_a_line_the_file_has(text: str, env: dict[str, str], line: int) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source=SRC, env=env)
    assert caught.value.line == line, str(caught.value)


def test_cross_check_failure_caused_by_env_names_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        parse("", MAX_ACTIVE_REPLICAS="2")
    assert "env MAX_ACTIVE_REPLICAS" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "env"),
    [
        ("vpn:\n  wait_healthy_s: .nan\n", {}),
        ("engines:\n  idle_ttl_s: .nan\n", {}),
        ("", {"GLUETUN_HEALTH_CHECK_INTERVAL_S": "nan"}),
        ("", {"VPN_UNHEALTHY_RESTART_TIMEOUT_S": "nan"}),
    ],
    ids=["yaml_wait_healthy", "yaml_idle_ttl", "env_poll_interval", "env_restart_timeout"],
)
def test_nan_is_rejected(text: str, env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        parse_config(text, source=SRC, env=env)


@pytest.mark.parametrize(
    ("env", "check"),
    [
        (
            {"VPN_MODE": "single", "GLUETUN_CONTAINER_NAME": "gluetun"},
            lambda c: (c.desired.vpn.mode, c.desired.vpn.containers) == ("single", ("gluetun",)),
        ),
        (
            {"GLUETUN_CONTAINER_NAME": "gluetun"},
            lambda c: (c.desired.vpn.mode, c.desired.vpn.containers) == ("single", ("gluetun",)),
        ),
        (
            {"GLUETUN_CONTAINER_NAME": "ga", "GLUETUN_CONTAINER_NAME_2": "gb"},
            lambda c: (c.desired.vpn.mode, c.desired.vpn.containers) == ("redundant", ("ga", "gb")),
        ),
        (
            {"VPN_MODE": "REDUNDANT", "GLUETUN_CONTAINER_NAME": "ga", "GLUETUN_CONTAINER_NAME_2": "gb"},
            lambda c: c.desired.vpn.mode == "redundant",
        ),
        ({"MAX_ACTIVE_REPLICAS": "7"}, lambda c: c.desired.engines.max_replicas == 7),
        ({"MAX_ACTIVE_REPLICAS": ""}, lambda c: c.desired.engines.max_replicas == 20),
        ({"LOG_LEVEL": "debug"}, lambda c: c.log_level == "DEBUG"),
        (
            {"VPN_RESTART_ENGINES_ON_RECONNECT": "false"},
            lambda c: c.desired.vpn.restart_engines_on_reconnect is False,
        ),
        (
            {"VPN_RESTART_ENGINES_ON_RECONNECT": "0"},
            lambda c: c.desired.vpn.restart_engines_on_reconnect is False,
        ),
        (
            {"VPN_RESTART_ENGINES_ON_RECONNECT": "TRUE"},
            lambda c: c.desired.vpn.restart_engines_on_reconnect is True,
        ),
        ({"GLUETUN_API_PORT": "8001"}, lambda c: c.vpn_api_port == 8001),
        ({"GLUETUN_HEALTH_CHECK_INTERVAL_S": "2.5"}, lambda c: c.vpn_poll_interval_s == 2.5),
        (
            {"VPN_UNHEALTHY_RESTART_TIMEOUT_S": "120"},
            lambda c: c.desired.vpn.unhealthy_restart_timeout_s == 120.0,
        ),
        ({"UNRELATED": "x"}, lambda c: c == parse("")),
    ],
    ids=[
        "mode_and_name",
        "name_implies_single",
        "two_names_imply_redundant",
        "mode_upper_case",
        "max_active_replicas",
        "empty_value_ignored",
        "log_level_lower_case",
        "reconnect_false",
        "reconnect_zero",
        "reconnect_upper_true",
        "gluetun_api_port",
        "health_check_interval",
        "unhealthy_restart_timeout",
        "unrelated_variable",
    ],
)
def test_env_overrides(env: dict[str, str], check: Callable[[Config], bool]) -> None:
    assert check(parse_config("", source=SRC, env=env))


def test_env_overrides_win_over_the_file() -> None:
    text = (
        "engines:\n  max_replicas: 5\n"
        "vpn:\n  mode: single\n  containers: [old]\n  restart_engines_on_reconnect: true\n"
        "log_level: ERROR\n"
    )
    cfg = parse(
        text,
        GLUETUN_CONTAINER_NAME="new",
        MAX_ACTIVE_REPLICAS="7",
        VPN_RESTART_ENGINES_ON_RECONNECT="false",
        LOG_LEVEL="warning",
    )
    assert cfg.desired.vpn.containers == ("new",)
    assert cfg.desired.engines.max_replicas == 7
    assert cfg.desired.vpn.restart_engines_on_reconnect is False
    assert cfg.log_level == "WARNING"


def test_env_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "error")
    assert parse_config("", source=SRC).log_level == "ERROR"


@pytest.mark.parametrize(
    ("env", "var", "key"),
    [
        ({"MAX_ACTIVE_REPLICAS": "many"}, "MAX_ACTIVE_REPLICAS", "engines.max_replicas"),
        ({"MAX_ACTIVE_REPLICAS": "0"}, "MAX_ACTIVE_REPLICAS", "engines.max_replicas"),
        ({"VPN_MODE": "bogus"}, "VPN_MODE", "vpn.mode"),
        (
            {"VPN_RESTART_ENGINES_ON_RECONNECT": "maybe"},
            "VPN_RESTART_ENGINES_ON_RECONNECT",
            "vpn.restart_engines_on_reconnect",
        ),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL", "log_level"),
        ({"GLUETUN_API_PORT": "x"}, "GLUETUN_API_PORT", "vpn.api_port"),
        ({"GLUETUN_API_PORT": "70000"}, "GLUETUN_API_PORT", "vpn.api_port"),
        (
            {"GLUETUN_HEALTH_CHECK_INTERVAL_S": "fast"},
            "GLUETUN_HEALTH_CHECK_INTERVAL_S",
            "vpn.health_check_interval_s",
        ),
        (
            {"VPN_UNHEALTHY_RESTART_TIMEOUT_S": "0"},
            "VPN_UNHEALTHY_RESTART_TIMEOUT_S",
            "vpn.unhealthy_restart_timeout_s",
        ),
        (
            {"GLUETUN_CONTAINER_NAME": "g", "GLUETUN_CONTAINER_NAME_2": "g"},
            "GLUETUN_CONTAINER_NAME",
            "vpn.containers",
        ),
    ],
    ids=[
        "max_not_int",
        "max_zero",
        "mode",
        "reconnect",
        "log_level",
        "api_port_not_int",
        "api_port_range",
        "interval_not_number",
        "timeout_below_minimum",
        "same_container_twice",
    ],
)
def test_bad_env_value_names_the_variable(env: dict[str, str], var: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse("engines:\n  min_replicas: 1\n", **env)
    assert str(caught.value).startswith(f"env {var}"), str(caught.value)
    assert f"{key}: " in str(caught.value)
    assert caught.value.line is None


def test_load_config_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "orchestrator.yaml"
    path.write_text("engines:\n  min_replicas: 2\n", encoding="utf-8")
    assert load_config(path, env={}) == parse("engines:\n  min_replicas: 2\n")


def test_load_config_errors_name_the_path(tmp_path: Path) -> None:
    path = tmp_path / "orchestrator.yaml"
    path.write_text("engines:\n  min_replicas: 2\n  colour: blue\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert str(caught.value).startswith(f"{path}:3: engines.colour: ")


def _fifo(path: Path) -> None:
    os.mkfifo(path)  # nobody writes: reading it would block for ever


def _oversized(path: Path) -> None:
    path.write_text("engines:\n  min_replicas: 2\n" + "#" * (2 * 1024 * 1024) + "\n")


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda path: None, "cannot read the file"),
        (lambda path: path.write_bytes(b"engines:\n  image: \xff\xfe\n"), "not UTF-8"),
        (lambda path: path.mkdir(), "Is a directory"),
        (_fifo, "not a regular file"),
        (_oversized, "at most 1048576 are read"),
    ],
    ids=["missing", "not_utf8", "a_directory", "a_fifo", "oversized"],
)
def test_load_config_unreadable_file(tmp_path: Path, make: Callable[[Path], object], says: str) -> None:
    path = tmp_path / "orchestrator.yaml"
    make(path)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert str(caught.value).startswith(f"{path}: ")
    assert says in str(caught.value)


@pytest.mark.parametrize(
    ("yaml_text", "says"),
    [
        ("engines:\n  idle_ttl_s: 1.0e+300\n", "at most"),
        ("engines:\n  stream_ttl_s: 99999999999\n", "at most"),
        ("vpn:\n  drain_grace_s: 1.0e+12\n", "at most"),
        ("engines:\n  max_replicas: 100000000\n", "between 1 and 1000"),
    ],
    ids=["ttl_1e300", "ttl_3000_years", "grace_huge", "replicas_huge"],
)
def test_huge_values_are_refused_with_the_key(yaml_text: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(yaml_text)
    assert caught.value.line == 2 and says in str(caught.value)


def _alias_bomb(levels: int) -> str:
    """Each level's mapping uses the one before twice: 2**levels values from a few lines."""
    lines = ["l0: &l0 {a: x, b: x}"] + [
        f"l{i}: &l{i} {{a: *l{i - 1}, b: *l{i - 1}}}" for i in range(1, levels)
    ]
    return "engines:\n  labels:\n" + "".join(f"    {line}\n" for line in lines)


@pytest.mark.parametrize(
    ("yaml_text", "says"),
    [
        (_alias_bomb(40), "expands to more than"),
        ("engines:\n  labels: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
        ("engines:\n  labels: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n", "nested too deeply"),
    ],
    ids=["billion_laughs", "deep_sequences", "deep_mappings"],
)
def test_hostile_documents_are_refused_not_walked(yaml_text: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(yaml_text)
    assert says in str(caught.value)


@pytest.mark.parametrize(
    "yaml_text",
    [
        "engines:\n  labels: " + "[" * 5000 + "]" * 5000 + "\n",
        "engines:\n  labels: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n",
    ],
    ids=["deep_sequences", "deep_mappings"],
)
def test_deep_flow_nesting_is_refused_before_pyyaml_scans_it(yaml_text: str) -> None:
    """PyYAML's scanner is quadratic in flow nesting (seconds of the event loop at 5,000
    levels) and its RecursionError has no line: the line says the linear pre-scan refused it."""
    with pytest.raises(ConfigError) as caught:
        parse(yaml_text)
    assert caught.value.line == 2 and "over 64 levels" in str(caught.value)


@pytest.mark.parametrize("seconds", [1, 2, 30])
def test_probe_timeout_in_whole_seconds_is_what_the_dial_loop_waits(seconds: int) -> None:
    probe = parse(SINGLE_G + f"  tunnel_probe:\n    timeout_s: {seconds}\n").desired.vpn.probe
    assert probe is not None and probe.timeout_s == seconds
    assert f"nc -z -w {seconds} " in loop_command(probe)


@pytest.mark.parametrize(
    "yaml_text",
    [
        "- " * 5000 + "x\n",
        "engines:\n  labels:\n    " + "- " * 5000 + "x\n",
        # 1000 levels are past Python's recursion limit in PyYAML's composer (600 already are)
        "engines:\n  labels:\n" + "".join(" " * (4 + i) + "-\n" for i in range(1000)),
        "engines:\n  labels:\n" + "".join(" " * (4 + i) + f"k{i}:\n" for i in range(1000)),
    ],
    ids=[
        "dashes_5000_top_level",
        "dashes_5000_in_a_key",
        "indented_sequences_1000",
        "indented_mappings_1000",
    ],
)
def test_deep_block_nesting_is_a_config_error_not_a_crash(yaml_text: str) -> None:
    """Block collections (no `[` or `{`) pass the flow pre-scan; PyYAML composes them by
    recursion, so thousands of levels end in RecursionError, which must become the error."""
    with pytest.raises(ConfigError) as caught:
        parse(yaml_text)
    assert str(caught.value) == f"{SRC}: invalid YAML: collections nested too deeply"


def test_deep_block_nesting_in_a_file_is_refused(tmp_path: Path) -> None:
    """A thousand levels fit in the 1 MiB a file may have: the size limit does not catch it."""
    path = tmp_path / "orchestrator.yaml"
    path.write_text("engines:\n  labels:\n" + "".join(" " * (4 + i) + "k:\n" for i in range(1000)))
    assert path.stat().st_size < 1024 * 1024
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(path, env={})


def test_brackets_in_quotes_and_comments_are_no_nesting() -> None:
    brackets = "[" * 200
    config = parse(f"engines:  # {brackets}\n  env:\n    A: '{brackets}'\n    B: \"{brackets}\"\n")
    assert config.desired.engines.env == {"A": brackets, "B": brackets}


def test_a_huge_bad_value_is_cut_in_the_message_and_both_ends_kept() -> None:
    huge = "x" * 900_000
    with pytest.raises(ConfigError) as caught:
        parse_config(f"vpn:\n  mode: {huge}\n", source=SRC, env={})
    message = str(caught.value)
    assert len(message) < 600
    assert message.startswith(f"{SRC}:2: vpn.mode: must be one of")
    assert "characters cut" in message
    assert message.endswith("x'")
