"""The table of Gluetun release lines the control-server client must read (v3.38, v3.39-v3.40,
v3.41.0-v3.41.1, v3.41.2+ and master; testbed/gluetun, docs/gluetun-releases.md), each with the
credentials its server has and the client sends, and what the daemon must make of it. One table
for its two runs: on the stand-in's image (tests/integration/test_gluetun_releases.py) and on its
scripts served locally (tests/http/test_gluetun_releases_local.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp
import pytest

from orchestrator.errors import ControlApiAuthError
from orchestrator.vpn.control import ControlReading, Credentials, GluetunControl

KEY = "k3y-for-the-table"
USER, PASSWORD = "operator", "hunter2"
PORT = 40555


@dataclass(frozen=True, kw_only=True)
class Row:
    release: str
    server: str  # "open": no credentials configured, "key": an apikey role, "basic": a basic role
    client: Credentials
    ports: str = str(PORT)  # what the stand-in forwards
    port: int | None = PORT  # what the client must read
    port_read: bool = True
    auth_error: bool = False
    id: str = field(default="")


RIGHT_KEY = Credentials(api_key=KEY)
WRONG_KEY = Credentials(api_key="nope")
NONE = Credentials()
RIGHT_BASIC = Credentials(user=USER, password=PASSWORD)

ROWS = [
    # <= v3.38: no auth at all; the new port route is a 400, the old one answers
    Row(id="v3.38_open", release="v3.38", server="open", client=NONE),
    Row(id="v3.38_key_is_ignored", release="v3.38", server="key", client=WRONG_KEY),
    # v3.39-v3.40: a public role covers the status routes but never /v1/portforward (401 even
    # with the right key): the old route gives the port
    Row(id="v3.40_open_public_role", release="v3.40", server="open", client=NONE),
    Row(id="v3.40_key_right", release="v3.40", server="key", client=RIGHT_KEY),
    Row(id="v3.40_key_wrong", release="v3.40", server="key", client=WRONG_KEY, auth_error=True),
    Row(id="v3.40_key_missing", release="v3.40", server="key", client=NONE, auth_error=True),
    Row(id="v3.40_basic_right", release="v3.40", server="basic", client=RIGHT_BASIC),
    Row(
        id="v3.40_several_ports_old_route",
        release="v3.40",
        server="key",
        client=RIGHT_KEY,
        ports=f"{PORT} {PORT + 1}",
    ),
    # v3.41: /v1/portforward, `{"ports": [...]}` with no `port` key for several; old route 301
    Row(id="v3.41_open_public_role", release="v3.41", server="open", client=NONE),
    Row(id="v3.41_key_right", release="v3.41", server="key", client=RIGHT_KEY),
    Row(id="v3.41_key_wrong", release="v3.41", server="key", client=WRONG_KEY, auth_error=True),
    Row(
        id="v3.41_several_ports", release="v3.41", server="key", client=RIGHT_KEY, ports=f"{PORT} {PORT + 1}"
    ),
    Row(id="v3.41_no_forwarded_port", release="v3.41", server="key", client=RIGHT_KEY, ports="0", port=None),
    Row(id="v3.41_basic_right", release="v3.41", server="basic", client=RIGHT_BASIC),
    Row(id="v3.41_basic_missing", release="v3.41", server="basic", client=NONE, auth_error=True),
    # v3.41.2+: `{"port": N, "ports": [...]}` always (`{"port": 0, "ports": null}` with none),
    # unknown path 404, the public role still there
    Row(id="v3.41.2_open_public_role", release="v3.41.2", server="open", client=NONE),
    Row(id="v3.41.2_key_right", release="v3.41.2", server="key", client=RIGHT_KEY),
    Row(id="v3.41.2_key_wrong", release="v3.41.2", server="key", client=WRONG_KEY, auth_error=True),
    Row(
        id="v3.41.2_several_ports",
        release="v3.41.2",
        server="key",
        client=RIGHT_KEY,
        ports=f"{PORT} {PORT + 1}",
    ),
    Row(id="v3.41.2_no_forwarded_port", release="v3.41.2", server="open", client=NONE, ports="0", port=None),
    Row(id="v3.41.2_basic_right", release="v3.41.2", server="basic", client=RIGHT_BASIC),
    # master (:latest): no public role at all: without credentials everything is 401
    Row(id="master_open_is_all_401", release="master", server="open", client=NONE, auth_error=True),
    Row(id="master_key_right", release="master", server="key", client=RIGHT_KEY),
    Row(
        id="master_several_ports",
        release="master",
        server="key",
        client=RIGHT_KEY,
        ports=f"{PORT} {PORT + 1}",
    ),
    Row(id="master_basic_right", release="master", server="basic", client=RIGHT_BASIC),
]


def stand_in_envs() -> dict[tuple[str, str, str], dict[str, str]]:
    """One stand-in per (release, server, ports) the rows need: its key -> its environment."""
    out: dict[tuple[str, str, str], dict[str, str]] = {}
    for row in ROWS:
        env = {"STANDIN_RELEASE": row.release, "STANDIN_FORWARDED_PORT": row.ports}
        if row.server == "key":
            env["STANDIN_API_KEY"] = KEY
        if row.server == "basic":
            env |= {"STANDIN_BASIC_USER": USER, "STANDIN_BASIC_PASSWORD": PASSWORD}
        out.setdefault(stand_in_of(row), env)
    return out


def stand_in_of(row: Row) -> tuple[str, str, str]:
    return (row.release, row.server, row.ports)


async def check_row(base: str, row: Row) -> None:
    """The client reads the stand-in at `base` as `row` says: a credentials error or the reading."""
    async with aiohttp.ClientSession() as session:
        control = GluetunControl(session, credentials=lambda: row.client)
        if row.auth_error:
            with pytest.raises(ControlApiAuthError, match="/v1/vpn/status: 401"):
                await control.read(base)
            return
        reading = await control.read(base)
    assert reading == ControlReading(
        vpn_status="running",
        public_ip="203.0.113.7",
        forwarded_port=row.port,
        port_read=row.port_read,
        port_error=None,
    )
