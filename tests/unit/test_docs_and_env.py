"""Every environment variable and YAML key the docs and stacks name is one the code reads, and
the reverse: every variable the code reads is documented and reaches the daemon in every stack.

The code's side: `ENV_OVERRIDES` and `CONTAINER_NAME_VARS` (the seed's variables) and `SCHEMA`
(the YAML keys) in orchestrator/config.py. The docs' side: the compose stacks
(compose/*/docker-compose.yml: each container's environment and every `${VAR}`), their
`.env.example`, README.md and every page under docs/ (backticked names, `NAME=` and `${NAME}` in
code; the key and variable tables in docs/configuration.md, the launch presets in
docs/engine-images.md) and the comments of config.example.yaml. A name the daemon does not read
must be on one of the explicit lists below, each saying whose variable it is.
(config.example.yaml's keys == SCHEMA is tested elsewhere.)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.config import CONTAINER_NAME_VARS, ENV_OVERRIDES, SCHEMA, load_config, schema_leaves
from orchestrator.config.launch import CUSTOM_KEYS, PLACEHOLDERS, PRESETS, preset_for_image

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]  # every page a user reads
CONFIGURATION = DOCS / "configuration.md"  # the key and variable tables
ENGINE_IMAGES = DOCS / "engine-images.md"  # the launch presets
CONFIG_EXAMPLE = REPO / "config.example.yaml"
STACKS = sorted(p.parent for p in (REPO / "compose").glob("*/docker-compose.yml"))

# --- the code's side ---------------------------------------------------------------------------
DAEMON_VARS = frozenset(ENV_OVERRIDES) | frozenset(CONTAINER_NAME_VARS)
# read by the daemon's Docker client (aiodocker), like the docker CLI; `--docker-url` wins
DOCKER_CLIENT_VARS = frozenset({"DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"})

# --- everybody else's, each with its reason ----------------------------------------------------
# qmcgaw/gluetun's own variables, as the stacks set them on the Gluetun services
GLUETUN_VARS = frozenset(
    {
        "VPN_SERVICE_PROVIDER",
        "VPN_TYPE",
        "WIREGUARD_PRIVATE_KEY",
        "WIREGUARD_ADDRESSES",
        "OPENVPN_USER",
        "OPENVPN_PASSWORD",
        "SERVER_COUNTRIES",
        "VPN_PORT_FORWARDING",
        "TZ",
        "HTTP_CONTROL_SERVER_ADDRESS",
        "HTTP_CONTROL_SERVER_AUTH_DEFAULT_ROLE",
        "FIREWALL_VPN_INPUT_PORTS",
        "HTTP_CONTROL_SERVER_LOG",
        "FIREWALL_INPUT_PORTS",
    }
)
# the acexy proxy's (krinkuto11/acexy) variables, the ones its code reads (not ACEXY_LISTEN_ADDR,
# which its README names: ../shared/tools/acexy/README.md)
ACEXY_VARS = frozenset(
    {
        "ACEXY_ADDR",
        "ACEXY_ORCH_URL",
        "ACEXY_ORCH_APIKEY",
        "ACEXY_MAX_STREAMS_PER_ENGINE",
        "ACEXY_HOST",
        "ACEXY_PORT",
        # read by acexy, which the proxy client reproduces (shared/proxy-contract.md)
        "ACEXY_EMPTY_TIMEOUT",
        "ACEXY_NO_RESPONSE_TIMEOUT",
        "ACEXY_CONTAINER_ID",
    }
)
# what the engine images read (docs/engine-images.md; orchestrator/config/launch.py)
ENGINE_VARS = frozenset(
    {"HTTP_PORT", "HTTPS_PORT", "P2P_PORT", "BIND_ALL", "CACHE_LIMIT", "INTERNAL_BUFFERING"}
    | {"ACESTREAM_ARGS", "CONF"}
)
# the stacks' own knobs: interpolated by compose in docker-compose.yml, never seen by a container
# under their own name
COMPOSE_KNOBS = frozenset(
    {
        "ORCHESTRATOR_IMAGE",
        "BASE_IMAGE",
        "DOCKER_SOCKET",
        "SOCKET_PROXY_IMAGE",
        "ORCHESTRATOR_BIND",
        "ORCHESTRATOR_PORT",
        "ENGINE_BIND",
        "GLUETUN_IMAGE",
        "WIREGUARD_PRIVATE_KEY_2",
        "WIREGUARD_ADDRESSES_2",
        "ACEXY_IMAGE",
        "ACEXY_BIND",
        "ACEXY_HTTP_PORT",
        # the optional monitoring profile (docs/status-page.md)
        "PROMETHEUS_IMAGE",
        "GRAFANA_IMAGE",
        "GRAFANA_BIND",
        "GRAFANA_PORT",
    }
)
# knobs of this repository's scripts and test bed, which the docs may mention
TOOLING_VARS = frozenset(
    {
        "FORCE",
        "TEST_ARTIFACTS",
        "DEBIAN_MIRROR",
        "DEMO_PORT",
        "ENSURE_DOCKER_TIMEOUT_S",
        "DOCKERD_EXTRA_ARGS",
        "STANDIN_READY_DELAY_S",
        "STANDIN_START_UNHEALTHY",
        "STANDIN_FORWARDED_PORT",
        "STANDIN_PUBLIC_IP",
        "STANDIN_API_KEY",
        "STANDIN_RELEASE",
        "FAULT_SEED",
        "FUZZ_EXAMPLES",
        "FUZZ_SEED",
        "SOAK_ROUNDS",
        "SOAK_MINUTES",
        "SOAK_VIEWERS",
        "ACEXY_BIN",
        "TEST_JOBS",
        "TEST_HOST_PORT_RANGE",
    }
)
# other projects' variables that the research notes in docs/engine-images.md and
# docs/gluetun-releases.md name (read from their source), which the daemon neither reads nor sets
RESEARCH_VARS = frozenset(
    {
        # the engine images': left over and never read, or read only by the AceServe images
        "ALLOW_REMOTE_ACCESS",
        "EXTRA_FLAGS",
        "PYTHON_EGG_CACHE",
        "WAIT_FOR_VPN",
        "VPN_TIMEOUT",
        "DNS_OVERRIDE",
        # the reference orchestrator's image tags, acexy's HLS switch
        "ENGINE_ARM32_VERSION",
        "ENGINE_ARM64_VERSION",
        "ACEXY_M3U8",
        # Gluetun's, which the stacks do not set
        "HEALTH_RESTART_VPN",
        "HTTP_CONTROL_SERVER_AUTH_CONFIG_FILEPATH",
        # a placeholder in a quoted shell test (`[ -n "${VAR}" ]`)
        "VAR",
    }
)
# daemon variables a stack must be given (`${VAR:?...}`): the API key (docs/security.md)
REQUIRED_DAEMON_VARS = frozenset({"ORCHESTRATOR_API_KEY"})
SERVICE_VARS = {  # which container may be given which variables, by the service's image
    "orchestrator": DAEMON_VARS | DOCKER_CLIENT_VARS,
    "gluetun": GLUETUN_VARS,
    "acexy": ACEXY_VARS,
    "socket-proxy": frozenset(),
    "prometheus": frozenset(),
    "grafana": frozenset({"GF_SERVER_HTTP_ADDR", "GF_SERVER_HTTP_PORT"}),
}
# what the real-tunnel lane's Gluetun stand-in reads (testbed/realvpn/images/gluetun), which
# docs/real-tunnel-lane.md documents: Gluetun's own names for what it reproduces, and its knobs
LANE_VARS = frozenset(
    {
        "DNS_ADDRESS",
        "HEALTH_ICMP_TARGET_IP",
        "HEALTH_TARGET_ADDRESS",
        "HEALTH_VPN_DURATION_ADDITION",
        "HEALTH_VPN_DURATION_INITIAL",
        "VPN_INTERFACE",
        "WIREGUARD_ENDPOINT_IP",
        "WIREGUARD_ENDPOINT_PORT",
        "WIREGUARD_MTU",
        "WIREGUARD_PUBLIC_KEY",
        "STANDIN_AUTH_ROUTES",
        "STANDIN_HEALTH",
        "STANDIN_HEALTH_FULL_PERIOD",
        "STANDIN_HEALTH_SMALL_PERIOD",
        "STANDIN_HEALTH_SMALL_TIMEOUT",
        "STANDIN_HEALTH_SMALL_TRIES",
        "STANDIN_PUBLICIP_URL",
    }
)

KNOWN = (
    DAEMON_VARS
    | DOCKER_CLIENT_VARS
    | GLUETUN_VARS
    | ACEXY_VARS
    | ENGINE_VARS
    | COMPOSE_KNOBS
    | TOOLING_VARS
    | RESEARCH_VARS
    | LANE_VARS
)

NAME = r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+"  # in prose at least one underscore: not TODO, JSON, API


def interpolated(text: str) -> set[str]:
    """Names in `${NAME}`, `${NAME:-x}`, `${NAME:?x}` (compose's interpolation; `$NAME` and
    `$(command)` in the docs' shell examples are left alone)."""
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))


def env_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", name), f"{path}:{number}: not NAME=value"
        assert name not in out, f"{path}:{number}: {name} twice"
        assert "#" not in value, (
            f"{path}:{number}: docker-compose 1.x would keep the comment in the "
            f"value of {name}: put comments on their own lines"
        )
        out[name] = value
    return out


def service_role(name: str, service: dict[str, Any]) -> str:
    image = str(service.get("image", ""))
    if name == "orchestrator":
        return "orchestrator"
    if name == "socket-proxy" and "haproxy" in image:
        return "socket-proxy"
    for role in ("gluetun", "acexy", "prometheus", "grafana"):
        if role in image:
            return role
    raise AssertionError(f"service {name} ({image}): unknown; add its variables to this test")


def code_spans(markdown: str) -> list[str]:
    """Fenced code blocks and inline code spans."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", markdown, flags=re.S | re.M)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", markdown, flags=re.S | re.M)
    return blocks + re.findall(r"`([^`\n]+)`", prose)


def pages_text() -> str:
    assert CONFIGURATION in PAGES and ENGINE_IMAGES in PAGES, "the pages holding the tables moved?"
    return "\n".join(page.read_text(encoding="utf-8") for page in PAGES)


def docs_names() -> set[str]:
    names: set[str] = set()
    for span in code_spans(pages_text()):
        if re.fullmatch(NAME, span.strip()):
            names.add(span.strip())
        names |= set(re.findall(r"(?<![\w-])(" + NAME + r")=", span)) | interpolated(span)
        names |= set(re.findall(r"(?<![\w-])(" + NAME + r"):\s", span))  # compose `NAME: value`
    return names


def dotted_keys() -> dict[str, Any]:
    """Every key, dotted (`engines.image`, `vpn.tunnel_probe.target`, `log_level`) -> default."""
    return schema_leaves()


def env_of_key() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for var, (key, _parse) in ENV_OVERRIDES.items():
        out.setdefault(key, set()).add(var)
    for var in CONTAINER_NAME_VARS:
        out.setdefault("vpn.containers", set()).add(var)
    return out


# --- compose stacks ----------------------------------------------------------------------------


def test_there_are_stacks() -> None:
    assert STACKS, "compose/*/docker-compose.yml"


@pytest.mark.parametrize("stack", STACKS, ids=lambda p: p.name)
def test_stack_env_example_matches_its_compose_file(stack: Path) -> None:
    documented = env_file(stack / ".env.example")
    used = interpolated((stack / "docker-compose.yml").read_text())
    assert set(documented) == used, (
        f"{stack.name}: only in .env.example (does nothing): {sorted(set(documented) - used)}; "
        f"used by docker-compose.yml but not in .env.example: {sorted(used - set(documented))}"
    )
    unknown = used - DAEMON_VARS - GLUETUN_VARS - ACEXY_VARS - COMPOSE_KNOBS
    assert not unknown, f"{stack.name}: variables nobody reads: {sorted(unknown)}"
    lacking = DAEMON_VARS - set(documented)
    assert not lacking, f"{stack.name}/.env.example lacks {sorted(lacking)}"
    assert all(documented[v] == "" for v in DAEMON_VARS), "empty by default: the YAML decides"


@pytest.mark.parametrize("stack", STACKS, ids=lambda p: p.name)
def test_stack_containers_get_only_variables_they_read(stack: Path) -> None:
    services = yaml.safe_load((stack / "docker-compose.yml").read_text())["services"]
    for name, service in services.items():
        env = service.get("environment") or {}
        assert isinstance(env, dict), f"{stack.name}/{name}: write environment as a mapping"
        role = service_role(name, service)
        stray = set(env) - SERVICE_VARS[role]
        assert not stray, f"{stack.name}/{name}: {role} does not read {sorted(stray)}"
        for var, value in env.items():
            if var in REQUIRED_DAEMON_VARS:  # the stack refuses to start without it
                assert value.startswith(f"${{{var}:?"), f"{stack.name}/{name}: {var}: {value!r}"
            elif var in DAEMON_VARS:  # passed through from .env under the same name
                assert value == f"${{{var}:-}}", f"{stack.name}/{name}: {var}: {value!r}"
    orchestrator_env = set(services["orchestrator"]["environment"])
    assert orchestrator_env >= DAEMON_VARS, (
        f"{stack.name}: .env cannot reach the daemon for {sorted(DAEMON_VARS - orchestrator_env)}"
    )


@pytest.mark.parametrize("stack", STACKS, ids=lambda p: p.name)
def test_stack_config_is_valid(stack: Path) -> None:
    """Valid with the key the stack passes (ORCHESTRATOR_API_KEY, required by the compose file)."""
    config = load_config(stack / "config" / "orchestrator.yaml", env={"ORCHESTRATOR_API_KEY": "k"})
    assert config.api.port == 8000 and config.api.api_key == "k"
    assert not config.api.allow_unauthenticated, "the stacks never open the API to unauthenticated writes"


# --- README.md and docs/ --------------------------------------------------------------------------


def test_docs_name_only_known_variables() -> None:
    unknown = docs_names() - KNOWN
    assert not unknown, (
        f"README.md or docs/ name variables nobody reads: {sorted(unknown)} (a typo? else "
        f"add them to the right list in {Path(__file__).name})"
    )


def test_docs_mention_every_variable_the_code_reads() -> None:
    missing = (DAEMON_VARS | {"DOCKER_HOST"}) - docs_names()
    assert not missing, f"neither README.md nor docs/ mention {sorted(missing)}"


def _table(page: Path, header: str) -> list[list[str]]:
    """Rows (cells) of the table in `page` whose header row starts with `header`."""
    lines = page.read_text(encoding="utf-8").splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(header)), None)
    assert start is not None, f"{page.relative_to(REPO)}: no table starting {header!r}"
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    return rows


def test_variable_table_matches_the_code() -> None:
    mapping: dict[str, str] = {}
    for names, key, *_ in _table(CONFIGURATION, "| variable | key |"):
        dotted = re.search(r"`([a-z_]+(?:\.[a-z_]+)?)`", key)
        assert dotted, key
        for var in re.findall(r"`(" + NAME + ")`", names):
            mapping[var] = dotted[1]
    expected = {var: key for var, (key, _parse) in ENV_OVERRIDES.items()}
    expected |= {var: "vpn.containers" for var in CONTAINER_NAME_VARS}
    assert mapping == expected


def _fmt_default(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict | list):
        return "{}" if isinstance(value, dict) else "[]"
    return str(value)


def expected_key_rows() -> list[str]:
    envs = env_of_key()
    return [
        f"| `{key}` | `{_fmt_default(default)}` | "
        f"{', '.join(f'`{v}`' for v in sorted(envs.get(key, ()), key=len))} | <what it does> |"
        for key, default in dotted_keys().items()
    ]


def test_key_table_matches_the_schema() -> None:
    rows = _table(CONFIGURATION, "| key | default | env | what |")
    found = {}
    for key, default, env, _what in rows:
        found[key.strip("`")] = (default.strip("`"), set(re.findall(r"`(" + NAME + ")`", env)))
    expected = {
        key: (_fmt_default(default), env_of_key().get(key, set())) for key, default in dotted_keys().items()
    }
    assert found == expected, (
        "docs/configuration.md's key table is out of step with "
        "orchestrator/config.py SCHEMA/ENV_OVERRIDES; the rows should be:\n" + "\n".join(expected_key_rows())
    )


def test_docs_name_only_real_keys() -> None:
    sections = "|".join(s for s, keys in SCHEMA.items() if "" not in keys)
    keys = set(dotted_keys()) | {k.rsplit(".", 1)[0] for k in dotted_keys()}  # nested: the mapping too
    named = set()
    for span in code_spans(pages_text()):
        named |= set(re.findall(r"(?<![\w./-])((?:" + sections + r")\.[a-z_]+)\b", span))
    not_keys = {"vpn.go"}  # a Go source file of Gluetun's (docs/gluetun-releases.md)
    unknown = {k for k in named - keys - not_keys if not k.startswith("orchestrator.")}
    assert not unknown, f"README.md or docs/ name keys config.py does not have: {sorted(unknown)}"


# --- config.example.yaml comments ----------------------------------------------------------------


def example_comment_vars() -> dict[str, set[str]]:
    """Dotted key -> the variables its line's comment names."""
    out: dict[str, set[str]] = {}
    section = ""
    for line in CONFIG_EXAMPLE.read_text().splitlines():
        match = re.match(r"^(\s*)([a-z_]+):[^#]*(?:#(.*))?$", line)
        if not match:
            continue
        indent, key, comment = match.groups()
        if not indent:
            section = key
        dotted = key if not indent else f"{section}.{key}"
        names = set(re.findall(NAME, comment or ""))
        if names:
            out[dotted] = names
    return out


def test_config_example_comments_name_the_right_variables() -> None:
    named = example_comment_vars()
    expected = {key: envs for key, envs in env_of_key().items()}
    assert named == expected, (
        "config.example.yaml: each key's comment should name the variables "
        f"that override it: expected {expected}, found {named}"
    )


# --- engine launch templates (docs/engine-images.md) -----------------------------------------------


def test_presets_table_lists_exactly_the_presets() -> None:
    rows = _table(ENGINE_IMAGES, "| preset | images")
    assert [row[0].strip("`") for row in rows] == [*PRESETS, "custom"]
    for name, images, _how in rows:
        for image in re.findall(r"`([a-z0-9./-]+/[a-z0-9.-]+(?::[a-z0-9.*-]+)?)`", images):
            if "*" not in image and name != "`custom`":
                assert preset_for_image(image) == name.strip("`"), f"{image} is not picked as {name}"


def test_engine_images_page_documents_every_placeholder_and_custom_key() -> None:
    text = ENGINE_IMAGES.read_text(encoding="utf-8")
    for placeholder in PLACEHOLDERS:
        assert f"`{{{placeholder}}}`" in text, placeholder
    for key in CUSTOM_KEYS:
        assert f"`{key}`" in text, key
