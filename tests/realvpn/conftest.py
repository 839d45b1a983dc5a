"""Fixtures for the real-tunnel lane: the Gluetun stand-in (or REALVPN_GLUETUN_IMAGE) behind a real
WireGuard tunnel.

`real_vpn` (one Gluetun) and `real_vpn_pair` (two, each behind its own WireGuard server) are
module-scoped: a module's tests share one bed, in file order, and it is always torn down.
`real_vpn_factory(gluetuns=..., **RealVpnBed kwargs, configure=callback)` makes custom beds
(e.g. ports published on Gluetun) for a module that overrides `real_vpn`.

Nothing skips unless `REALVPN_GLUETUN_IMAGE` names an image that is not there (the opt-in real
Gluetun); anything else missing fails (images: testbed/realvpn/build-images.sh, which `make test`
runs). The bed's containers carry this session's label; `REALVPN_LABEL=KEY=VALUE` names another.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from testkit.harness import Daemon
from testkit.realvpn.bed import RealVpnBed, broken_prerequisites, missing_prerequisites
from testkit.realvpn.daemon import BED_LABEL


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "realvpn: needs the real-tunnel bed (testbed/realvpn/build-images.sh)")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test's report gets the tail of its daemons' logs and of its beds' Gluetun and
    WireGuard-server logs."""
    report = yield
    if report.failed and report.when == "call":
        for daemon in [v for v in getattr(item, "funcargs", {}).values() if isinstance(v, Daemon)]:
            report.sections.append((f"daemon log {daemon.workdir}", daemon.log()[-15000:]))
        for bed in {
            id(v): v for v in getattr(item, "funcargs", {}).values() if isinstance(v, RealVpnBed)
        }.values():
            for name in [*bed.gluetun_names, *(t.server for t in bed.tunnels)]:
                report.sections.append((f"docker logs {name}", bed.logs(name, tail=60)))
    return report


@pytest.fixture(scope="session")
def realvpn_available() -> None:
    reason = missing_prerequisites()
    if reason:
        pytest.skip(f"real-VPN bed unavailable: {reason}")
    broken = broken_prerequisites()
    if broken:
        pytest.fail(f"real-VPN bed cannot run: {broken}")


BedFactory = Callable[..., RealVpnBed]


@pytest.fixture(scope="module")
def real_vpn_factory(realvpn_available: None) -> Iterator[BedFactory]:
    made: list[RealVpnBed] = []

    def factory(
        gluetuns: int = 1, configure: Callable[[RealVpnBed], Any] | None = None, **kwargs: Any
    ) -> RealVpnBed:
        # this session's label (unless REALVPN_LABEL names another): a concurrent suite's
        # clean-up (harness.remove_test_containers) then leaves this live bed alone
        kwargs.setdefault("label", os.environ.get("REALVPN_LABEL") or BED_LABEL)
        bed = RealVpnBed(gluetuns, **kwargs)
        if configure is not None:
            configure(bed)  # e.g. lambda b: b.spec(b.gluetun).publish(19000)
        made.append(bed)
        return bed.up()

    yield factory
    for bed in made:
        bed.down()


@pytest.fixture(scope="module")
def real_vpn(real_vpn_factory: BedFactory) -> RealVpnBed:
    return real_vpn_factory(1)


@pytest.fixture(scope="module")
def real_vpn_pair(real_vpn_factory: BedFactory) -> RealVpnBed:
    return real_vpn_factory(2)
