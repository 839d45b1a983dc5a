"""The tunnel probe's verdicts as the daemon reads them: lines of the probe's log, followed as
they are written, read again at every resync, and never taken from an earlier run of the probe.
On the in-memory Docker (its `follow_log` ends when the container stops, as Docker's does); the
real loop and the real logs API are tests/integration/test_tunnel_probe.py's."""

from __future__ import annotations

import asyncio

from orchestrator.docker.probes import BROKEN, CANNOT_DIAL, DOWN, UP
from testkit.fake_docker import FakeContainer, FakeDocker
from tests.workers.conftest import ONE_VPN, POOL, World, world


def probe_of(docker: FakeDocker, vpn: str = "gluetun") -> FakeContainer:
    gluetun = docker.by_name(vpn)
    return docker.run(
        f"probe-{vpn}",
        health=None,
        labels={
            "orchestrator.managed": "acestream",
            "orchestrator.pool": POOL,
            "orchestrator.role": "probe",
            "orchestrator.vpn": vpn,
            "orchestrator.vpn_id": gluetun.id,
        },
    )


async def followed(w: World, probe: FakeContainer) -> None:
    """Until the probe's log stream is open (no store change says so: look every 10 ms)."""
    await w.until("the probe known", lambda: probe.id in w.store.probes)
    for _ in range(300):
        if w.docker._log_followers.get(probe.id):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the probe's log was never followed")


async def test_a_verdict_hides_and_shows_the_vpn_as_it_is_written() -> None:
    docker = FakeDocker()
    docker.run("gluetun")
    async with world(ONE_VPN, docker) as w:
        probe = probe_of(docker)
        await followed(w, probe)
        docker.write_log(probe.name, UP)
        await w.until("tunnel up", lambda: w.store.vpns["gluetun"].probe_up is True)
        docker.write_log(probe.name, DOWN)
        await w.until("tunnel down", lambda: w.store.vpns["gluetun"].state == "unhealthy")
        assert w.store.vpns["gluetun"].probe_up is False
        docker.write_log(probe.name, BROKEN + CANNOT_DIAL)
        await w.until("broken", lambda: w.store.vpns["gluetun"].probe_error == CANNOT_DIAL)
        assert w.store.vpns["gluetun"].probe_up is None  # not a dead tunnel


async def test_a_line_the_stream_missed_is_read_at_the_next_resync() -> None:
    docker = FakeDocker()
    docker.run("gluetun")
    async with world(ONE_VPN, docker) as w:
        probe = probe_of(docker)
        await followed(w, probe)
        docker.write_log(probe.name, UP)
        await w.until("tunnel up", lambda: w.store.vpns["gluetun"].probe_up is True)
        docker._log_followers.pop(probe.id)  # the stream stalls: the next line never arrives
        docker.write_log(probe.name, DOWN)
        await w.events.resync()
        assert w.store.vpns["gluetun"].probe_up is False


async def test_a_restarted_probe_has_no_verdict_until_its_new_run_writes_one() -> None:
    docker = FakeDocker()
    docker.run("gluetun")
    async with world(ONE_VPN, docker) as w:
        probe = probe_of(docker)
        await followed(w, probe)
        docker.write_log(probe.name, DOWN)
        await w.until("tunnel down", lambda: w.store.vpns["gluetun"].probe_up is False)
        docker.restart_in_place(probe.name)  # its previous run's "tunnel down" stays behind
        await w.until("no verdict", lambda: w.store.vpns["gluetun"].probe_up is None)
        await w.events.resync()
        assert w.store.vpns["gluetun"].probe_up is None
        await followed(w, probe)
        docker.write_log(probe.name, UP)
        await w.until("the new run's verdict", lambda: w.store.vpns["gluetun"].probe_up is True)
