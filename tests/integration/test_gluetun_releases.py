"""The control-server client over every Gluetun release line, as a table: the stand-in answers as
v3.38, v3.39-v3.40, v3.41.0-v3.41.1, v3.41.2+ and master do (testbed/gluetun,
docs/gluetun-releases.md), with no credentials configured, an API-key role or a Basic role, and
the client sends the right ones, wrong ones or none. Each row names what the daemon must make of
it: the VPN status, the public IP and the forwarded port, or a credentials error (only ever from
the status route)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator
from dataclasses import dataclass, field

import aiohttp
import pytest

from orchestrator.errors import ControlApiAuthError
from orchestrator.vpn.control import ControlReading, Credentials, GluetunControl
from tests.integration.harness import GLUETUN_IMAGE, docker, inspect, label_args, wait_for

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


@pytest.fixture(scope="module")
def stand_ins() -> Iterator[dict[tuple[str, str, str], str]]:
    """One stand-in per (release, server, ports) the rows need: container -> its control URL."""
    made: dict[tuple[str, str, str], str] = {}
    ids: list[str] = []
    for row in ROWS:
        key = (row.release, row.server, row.ports)
        if key in made:
            continue
        env = [
            "-e",
            f"STANDIN_RELEASE={row.release}",
            "-e",
            f"STANDIN_FORWARDED_PORT={row.ports}",
            "-e",
            "HTTP_CONTROL_SERVER_LOG=off",
        ]
        if row.server == "key":
            env += ["-e", f"STANDIN_API_KEY={KEY}"]
        if row.server == "basic":
            env += ["-e", f"STANDIN_BASIC_USER={USER}", "-e", f"STANDIN_BASIC_PASSWORD={PASSWORD}"]
        cid = docker("run", "-d", *label_args(), *env, GLUETUN_IMAGE)
        ids.append(cid)
        info = inspect(cid)
        assert info is not None
        made[key] = f"http://{info['NetworkSettings']['IPAddress']}:8000"
    for url in made.values():
        wait_for(f"{url} answering", functools.partial(_answers, url), timeout=10)
    yield made
    docker("rm", "-f", *ids, check=False)


def _answers(url: str) -> bool:
    async def probe() -> bool:
        async with aiohttp.ClientSession() as session:
            try:
                async with session.get(url + "/v1/version", timeout=aiohttp.ClientTimeout(total=1)):
                    return True
            except (aiohttp.ClientError, TimeoutError):
                return False

    return asyncio.run(probe())


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
async def test_the_client_reads_every_release(stand_ins: dict[tuple[str, str, str], str], row: Row) -> None:
    base = stand_ins[(row.release, row.server, row.ports)]
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
