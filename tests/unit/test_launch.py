"""Launch templates (orchestrator/config/launch.py): which family an image is, how a template is
written and checked, and the property they exist for: the ports every engine really binds, as
each image's own entrypoint logic derives them from the create body, are pairwise distinct
within a network namespace."""

from __future__ import annotations

import shlex
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest

from orchestrator.config import parse_config
from orchestrator.config.launch import PRESETS, preset_for_image
from orchestrator.docker.engines import create_body
from orchestrator.errors import ConfigError
from reconcilers import engine_spec_hash, plan
from reconcilers.model import ENGINE_DEFAULT_PORTS, CreateEngine
from testkit.factories import NOW, observed, vpn


@pytest.mark.parametrize(
    ("image", "preset"),
    [
        ("ghcr.io/krinkuto11/acestream-http-proxy:latest", "acestream-http-proxy"),
        ("ghcr.io/krinkuto11/acestream-http-proxy", "acestream-http-proxy"),
        ("ghcr.io/krinkuto11/acestream-http-proxy@sha256:0347abcd", "acestream-http-proxy"),
        ("martinbjeldbak/acestream-http-proxy:2.1", "acestream-http-proxy"),
        ("jopsis/acestream:x64", "jopsis"),
        ("jopsis/acestream:arm64-v3.2.14", "jopsis-arm"),
        ("jopsis/acestream:arm32-v3.2.13", "jopsis-arm"),
        ("jopsis/acestream:latest-amd64", "aceserve"),
        ("ghcr.io/krinkuto11/acestream:latest-arm64", "aceserve"),
        ("ghcr.io/krinkuto11/aceserve:1.2-arm32", "aceserve"),
        ("jopsis/aceserve:latest", "aceserve"),
        ("jopsis/acestream:latest", None),  # says nothing certain
        ("acestream-orchestrator-test/engine:latest", None),
        ("localhost:5000/my-engine", None),
    ],
)
def test_the_family_of_an_image_name(image: str, preset: str | None) -> None:
    assert preset_for_image(image) == preset


def parse(engines: str, vpn: str = "") -> Any:
    return parse_config(f"engines:\n{engines}{vpn}", source="c.yaml", env={})


@pytest.mark.parametrize(
    ("engines", "line", "key", "says"),
    [
        ("  image: my/engine:1\n", 2, "engines.image", "set engines.launch.preset"),
        ("  image: my/engine:1\n  launch: {preset: bogus}\n", 3, "engines.launch.preset", "must be one of"),
        (
            "  launch: {preset: jopsis, command: [x]}\n",
            2,
            "engines.launch.command",
            "only for preset: custom",
        ),
        ("  launch:\n    preset: custom\n", 3, "engines.launch.preset", "needs at least one of"),
        (
            "  launch:\n    preset: custom\n    command: [run, '{http}']\n",
            4,
            "engines.launch.command",
            "unknown placeholder {http}",
        ),
        ("  launch:\n    preset: custom\n    command: run\n", 4, "engines.launch.command", "list of strings"),
        (
            "  launch:\n    preset: custom\n    env: {A: '{api_port!r}'}\n",
            4,
            "engines.launch.env",
            "unknown placeholder",
        ),
        ("  launch: {colour: blue}\n", 2, "engines.launch.colour", "unknown key"),
        ("  labels: {orchestrator.slot: '3'}\n", 2, "engines.labels", "the daemon writes these labels"),
        ("  labels: {host.http_port: '1'}\n", 2, "engines.labels", "the daemon writes these labels"),
    ],
    ids=[
        "unknown_image",
        "bad_preset",
        "command_with_a_preset",
        "empty_custom",
        "unknown_placeholder",
        "command_not_a_list",
        "format_spec_refused",
        "unknown_launch_key",
        "own_label",
        "seed_label",
    ],
)
def test_bad_launch_settings_name_file_line_and_key(engines: str, line: int, key: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(engines)
    error = caught.value
    assert (error.source, error.line, error.key) == ("c.yaml", line, key), str(error)
    assert says in str(error)


@pytest.mark.parametrize(
    ("vpn", "says"),
    [
        ("vpn: {mode: single, containers: [g], port_range: 7990-8009}\n", "8000 (vpn.api_port"),
        ("vpn: {mode: single, containers: [g], port_range: 9990-10089}\n", "9999 (Gluetun's health server"),
        ("vpn: {mode: single, containers: [g], port_range: 19000-19099, api_port: 19050}\n", "19050"),
    ],
    ids=["control_server", "health_server", "moved_control_server"],
)
def test_a_port_range_holding_one_of_gluetuns_own_ports_is_refused(vpn: str, says: str) -> None:
    with pytest.raises(ConfigError, match="Gluetun itself listens on") as caught:
        parse("  min_replicas: 1\n  max_replicas: 2\n", vpn)
    assert says in str(caught.value) and caught.value.key == "vpn.port_range"


def test_a_custom_template_is_kept_and_escaped_braces_allowed() -> None:
    config = parse(
        "  launch:\n    preset: custom\n    command: [run, '{{x}}', '--p={p2p_port}']\n"
        "    env: {PORT: '{http_port}'}\n"
    )
    launch = config.desired.engines.launch
    assert launch.command == ("run", "{{x}}", "--p={p2p_port}") and launch.env == {"PORT": "{http_port}"}


# -- what each image does with the create body (its entrypoint logic, docs/engine-images.md) --


def _flags_of_http_proxy(body: dict[str, Any]) -> list[str]:
    if body.get("Entrypoint", [])[-1:] == ["/app/start-engine"]:
        return list(body.get("Cmd") or [])
    env = dict(e.split("=", 1) for e in body["Env"])  # /entrypoint.sh: a few variables; no command
    names = {
        "HTTP_PORT": "--http-port=",
        "HTTPS_PORT": "--https-port=",
        "P2P_PORT": "--port=",
        "CACHE_LIMIT": "--cache-limit=",
    }
    flags = [f"{flag}{env[var]}" for var, flag in names.items() if env.get(var)]
    return ["--client-console", *flags, *(["--bind-all"] if env.get("BIND_ALL") else [])]


def _flags_of_jopsis(body: dict[str, Any]) -> list[str]:
    if body.get("Cmd"):
        return list(body["Cmd"])  # a command replaces `sh -c "start-engine ${ACESTREAM_ARGS}"`
    env = dict(e.split("=", 1) for e in body["Env"])
    return shlex.split(env.get("ACESTREAM_ARGS", "--client-console --bind-all "))


def _flags_of_python_main(body: dict[str, Any]) -> list[str]:
    cmd = list(body.get("Cmd") or ["python", "main.py", "--bind-all"])
    assert cmd[:2] == ["python", "main.py"], cmd
    return cmd[2:]


FLAGS_OF = {
    "acestream-http-proxy": _flags_of_http_proxy,
    "jopsis": _flags_of_jopsis,
    "jopsis-arm": _flags_of_python_main,
    "aceserve": _flags_of_python_main,
}


def flag_values(flags: list[str]) -> dict[str, str]:
    """`--name value` and `--name=value` as the engine reads them (the last one wins)."""
    values: dict[str, str] = {}
    for i, flag in enumerate(flags):
        name, eq, value = flag.partition("=")
        if name.startswith("--"):
            values[name] = value if eq else (flags[i + 1] if i + 1 < len(flags) else "")
    return values


def listening_ports(flags: list[str]) -> dict[str, int]:
    """The ports the engine binds for these flags (its own defaults where a flag is missing)."""
    values = flag_values(flags)
    ports = {
        "http": int(values.get("--http-port", 6878)),
        "api": int(values.get("--api-port", 62062)),
        "p2p": int(values.get("--port", 8621)),
    }
    if "--https-port" in values:
        ports["https"] = int(values["--https-port"])
    assert "--bind-all" in flags, "without --bind-all the HTTP API answers on loopback only"
    return ports


@dataclass(frozen=True)
class Family:
    preset: str
    image: str


FAMILIES = [
    Family(p, image)
    for p, image in [
        ("acestream-http-proxy", "ghcr.io/krinkuto11/acestream-http-proxy:latest"),
        ("jopsis", "jopsis/acestream:x64"),
        ("jopsis-arm", "jopsis/acestream:arm64-v3.2.14"),
        ("aceserve", "ghcr.io/krinkuto11/acestream:latest-arm64"),
    ]
]


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.preset)
@pytest.mark.parametrize("mode", ["single", "redundant", "none"])
def test_every_engine_binds_ports_no_other_engine_in_its_namespace_binds(family: Family, mode: str) -> None:
    vpn_yaml = {
        "single": "vpn: {mode: single, containers: [g1]}\n",
        "redundant": "vpn: {mode: redundant, containers: [g1, g2]}\n",
        "none": "",
    }[mode]
    config = parse(
        f"  image: {family.image}\n  min_replicas: 20\n  max_replicas: 20\n  cache_limit_gb: 4\n", vpn_yaml
    )
    desired = config.desired
    assert desired.engines.launch == PRESETS[family.preset]  # auto picked the family
    vpns = [vpn(n, forwarded_port=40000 if n == "g1" else None) for n in desired.vpn.containers]
    creates = [
        a for a in plan(desired, observed(desired, vpns=vpns), NOW).actions if isinstance(a, CreateEngine)
    ]
    assert len(creates) == 20
    by_namespace: dict[str, list[int]] = {}
    for create in creates:
        flags = FLAGS_OF[family.preset](create_body(create, desired.engines))
        ports = listening_ports(flags)
        assert set(ports) == {"http", "https", "api", "p2p"}, "a port left at the engine's default"
        assert (ports["http"], ports["https"], ports["api"], ports["p2p"]) == (
            create.ports.http,
            create.ports.https,
            create.ports.api,
            create.ports.p2p,
        )
        assert flag_values(flags).get("--cache-limit") == "4"
        namespace = create.vpn or f"engine#{create.slot}"  # no VPN: a namespace of its own
        by_namespace.setdefault(namespace, []).extend(ports.values())
    for namespace, bound in by_namespace.items():
        twice = sorted(p for p, n in Counter(bound).items() if n > 1)
        assert not twice, f"ports {twice} bound twice in namespace {namespace}"
        if mode != "none":
            assert not set(bound) & ENGINE_DEFAULT_PORTS


def test_the_templates_variables_win_over_engines_env_whose_other_entries_every_engine_gets() -> None:
    desired = parse(
        "  image: jopsis/acestream:x64\n  env: {ACESTREAM_ARGS: --mine, TZ: Europe/Madrid}\n"
    ).desired
    (create,) = [a for a in plan(desired, observed(desired), NOW).actions if isinstance(a, CreateEngine)][:1]
    env = dict(item.split("=", 1) for item in create_body(create, desired.engines)["Env"])
    assert env["ACESTREAM_ARGS"] != "--mine" and f"--http-port {create.ports.http}" in env["ACESTREAM_ARGS"]
    assert env["TZ"] == "Europe/Madrid"


BASE_ENGINES = "  image: jopsis/acestream:x64\n"


@pytest.mark.parametrize(
    ("edit", "rolls"),
    [
        ("  env: {TZ: UTC}\n", True),
        ("  labels: {team: a}\n", True),
        ("  cache_limit_gb: 7\n", True),
        ("  log_max_size: 5m\n", True),
        ("  log_max_files: 9\n", True),
        ("  host_port_range: 21000-21999\n", True),
        ("  launch: {preset: custom, command: [run, '{http_port}']}\n", True),
        ("  min_replicas: 4\n  max_replicas: 9\n", False),  # sizing is not the engines' spec
        ("  idle_ttl_s: 999\n", False),
    ],
)
def test_what_in_engines_calls_for_new_containers(edit: str, rolls: bool) -> None:
    before = engine_spec_hash(parse(BASE_ENGINES).desired)
    after = engine_spec_hash(parse(BASE_ENGINES + edit).desired)
    assert (before != after) is rolls


def test_another_image_calls_for_new_containers() -> None:
    other = "  image: jopsis/acestream:x64-2\n  launch: {preset: jopsis}\n"
    assert engine_spec_hash(parse(BASE_ENGINES).desired) != engine_spec_hash(parse(other).desired)
