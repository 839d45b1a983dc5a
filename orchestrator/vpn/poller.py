"""Polls every configured VPN's Gluetun control server and feeds what it says to the store.

A control server's answers (public IP, forwarded port, tunnel status) change only around a
reconnect, and a reconnect is announced by other signals: the tunnel probe's verdict, Docker's
health and container events, each a change of the VPN's state. So every VPN is read at once when
its container or state changes (a VPN that just turned healthy has its forwarded port read before
engines are placed), and otherwise only every `vpn.health_check_interval_s` (30 s by default): the
ceiling on how late a reconnect no other signal saw (a new exit within one probe interval) is
noticed. A reading that changes nothing wakes nobody (`StateStore.apply_vpn`). A reading or a
failure becomes a sighting of the VPN state machine (`reconcilers.vpn`); an error is logged once
per distinct message. A static forwarded port (`vpn.forwarded_ports`) wins over what the control
server says.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import structlog

from orchestrator.config import Config
from orchestrator.errors import ControlApiAuthError, ControlApiError, ControlApiUnreachable
from orchestrator.state.endpoints import vpn_host
from orchestrator.state.store import StateStore
from orchestrator.vpn.control import GluetunControl
from reconcilers.vpn import ControlFailed, ControlRead

log = structlog.get_logger()


class ControlPoller:
    """Polls every configured VPN's control server, all at once, every `interval()` seconds."""

    def __init__(self, control: GluetunControl, store: StateStore, config: Callable[[], Config]) -> None:
        self._control = control
        self._store = store
        self._config = config
        self._last_error: dict[str, str | None] = {}

    def _base_url(self, name: str) -> str:
        config = self._config()
        return f"http://{vpn_host(self._store, name, config.address)}:{config.vpn_api_port}"

    async def run(self) -> None:
        """Poll on the interval, and at once when a VPN's container or state changes (so a VPN
        that just turned healthy has its forwarded port read before engines are placed)."""
        changed = self._store.watch()
        seen: dict[str, tuple[str | None, str]] = {}
        due = 0.0
        while True:
            now = asyncio.get_running_loop().time()
            current: dict[str, tuple[str | None, str]] = {
                n: (v.container_id, v.state) for n, v in self._store.vpns.items()
            }
            config = self._config()
            names = [n for n in config.desired.vpn.containers if now >= due or current.get(n) != seen.get(n)]
            seen = current
            if now >= due:
                due = now + config.vpn_poll_interval_s
            await asyncio.gather(*(self.poll(name) for name in names))
            changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, due - asyncio.get_running_loop().time())):
                    await changed.wait()

    async def poll(self, name: str) -> None:
        vpn = self._store.vpns.get(name)
        if vpn is None or vpn.state in ("missing", "stopped"):
            return
        try:
            reading = await self._control.read(self._base_url(name))
        except ControlApiError as exc:
            self._report(name, str(exc), auth_failed=isinstance(exc, ControlApiAuthError))
            failed = ControlFailed(error=str(exc), unreachable=isinstance(exc, ControlApiUnreachable))
            self._store.apply_vpn(name, failed, time.time())
            return
        self._report(name, reading.port_error, auth_failed=False)
        static = self._config().vpn_forwarded_ports.get(name)
        read = ControlRead(
            forwarded_port=static if static is not None else reading.forwarded_port,
            public_ip=reading.public_ip,
            status=reading.vpn_status,
            port_read=static is not None or reading.port_read,
        )
        self._store.apply_vpn(name, read, time.time())

    def _report(self, name: str, error: str | None, *, auth_failed: bool) -> None:
        """Log an error once per distinct message, and its end once."""
        if error == self._last_error.get(name):
            return
        if error is None:
            log.info("gluetun_control_ok", vpn=name)
        else:
            log.warning("gluetun_control_error", vpn=name, error=error, auth_failed=auth_failed)
        self._last_error[name] = error
