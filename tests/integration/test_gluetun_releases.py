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

import aiohttp
import pytest

from testkit.gluetun_releases import ROWS, Row, check_row, stand_in_envs, stand_in_of
from testkit.harness import GLUETUN_IMAGE, docker, inspect, label_args, wait_for


@pytest.fixture(scope="module")
def stand_ins() -> Iterator[dict[tuple[str, str, str], str]]:
    """One stand-in per (release, server, ports) the rows need: container -> its control URL."""
    made: dict[tuple[str, str, str], str] = {}
    ids: list[str] = []
    for key, env in stand_in_envs().items():
        env_args = [arg for name, value in env.items() for arg in ("-e", f"{name}={value}")]
        cid = docker(
            "run", "-d", *label_args(), *env_args, "-e", "HTTP_CONTROL_SERVER_LOG=off", GLUETUN_IMAGE
        )
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
    await check_row(stand_ins[stand_in_of(row)], row)
