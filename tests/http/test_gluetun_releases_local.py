"""The control-server client over every Gluetun release line, against the stand-in's own scripts
served on this machine (tests/gluetun_standin.py): the same table as
tests/integration/test_gluetun_releases.py (which runs it against the stand-in's image), so the
five release lines are checked on every `make check`, Docker or not."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import aiohttp
import pytest

from orchestrator.errors import ControlApiAuthError
from orchestrator.vpn.control import ControlReading, GluetunControl
from tests.gluetun_standin import serve_standin
from tests.integration.test_gluetun_releases import KEY, PASSWORD, ROWS, USER, Row

RELEASES = {"v3.38", "v3.40", "v3.41", "v3.41.2", "master"}


def test_the_table_covers_five_release_lines() -> None:
    assert {row.release for row in ROWS} == RELEASES


@pytest.fixture(scope="module")
def stand_ins() -> Iterator[dict[tuple[str, str, str], str]]:
    made: dict[tuple[str, str, str], str] = {}
    with contextlib.ExitStack() as stack:
        for row in ROWS:
            key = (row.release, row.server, row.ports)
            if key in made:
                continue
            env = {"STANDIN_RELEASE": row.release, "STANDIN_FORWARDED_PORT": row.ports}
            if row.server == "key":
                env["STANDIN_API_KEY"] = KEY
            if row.server == "basic":
                env |= {"STANDIN_BASIC_USER": USER, "STANDIN_BASIC_PASSWORD": PASSWORD}
            made[key] = stack.enter_context(serve_standin(env))
        yield made


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
