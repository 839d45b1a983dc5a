"""The control-server client over every Gluetun release line, against the stand-in's own scripts
served on this machine (testkit/gluetun_standin.py): the same table (testkit/gluetun_releases.py) as
tests/integration/test_gluetun_releases.py (which runs it against the stand-in's image), so the
five release lines are checked on every `make check`, Docker or not."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testkit.gluetun_releases import ROWS, Row, check_row, stand_in_envs, stand_in_of
from testkit.gluetun_standin import serve_standins

RELEASES = {"v3.38", "v3.40", "v3.41", "v3.41.2", "master"}


def test_the_table_covers_five_release_lines() -> None:
    assert {row.release for row in ROWS} == RELEASES


@pytest.fixture(scope="module")
def stand_ins() -> Iterator[dict[tuple[str, str, str], str]]:
    with serve_standins(stand_in_envs()) as urls:
        yield urls


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
async def test_the_client_reads_every_release(stand_ins: dict[tuple[str, str, str], str], row: Row) -> None:
    await check_row(stand_ins[stand_in_of(row)], row)
