"""Gluetun's control server: forwarded port, public IP and VPN status, polled every few seconds.

Docker's health is the primary signal of a VPN's state; this poller adds what Docker cannot
see: the forwarded port (a change means the forwarded engine must be recreated), the public IP,
and a short internal VPN reconnect. A 401 means the API key is wrong, which is reported as a
credentials problem, never as the VPN being down. Newer Gluetun serves `/v1/portforward`; older
releases only `/v1/openvpn/portforwarded` (newer ones answer that with a 301), so the new route is
tried first and the old one is the fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog

from orchestrator.errors import ControlApiAuthError, ControlApiError
from orchestrator.state import StateStore

log = structlog.get_logger()

TIMEOUT = aiohttp.ClientTimeout(total=3.0)
PORT_ROUTES = ("/v1/portforward", "/v1/openvpn/portforwarded")


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlReading:
    forwarded_port: int | None
    public_ip: str | None
    vpn_status: str | None


class GluetunControl:
    def __init__(self, session: aiohttp.ClientSession, *,
                 api_key: Callable[[], str | None]) -> None:
        self._session = session
        self._api_key = api_key

    async def _get(self, base: str, path: str) -> tuple[int, Any]:
        try:
            key = self._api_key()
            headers = {"X-API-Key": key} if key else {}
            async with self._session.get(base + path, headers=headers, timeout=TIMEOUT,
                                         allow_redirects=False) as resp:
                if resp.status == 401:
                    raise ControlApiAuthError(f"{path}: 401 Unauthorized (check vpn.api_key)")
                if resp.status != 200:
                    return resp.status, None
                try:
                    return 200, await resp.json(content_type=None)
                except ValueError as exc:
                    raise ControlApiError(f"{path}: answered something that is not JSON") from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ControlApiError(f"{path}: {type(exc).__name__}: {exc}".rstrip(": ")) from exc

    async def forwarded_port(self, base: str) -> int | None:
        for path in PORT_ROUTES:
            status, body = await self._get(base, path)
            if status == 200:
                port = body.get("port") if isinstance(body, dict) else None
                if isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536:
                    return port
                if port in (0, None):
                    return None
                raise ControlApiError(f"{path}: unexpected port value {port!r}")
        return None

    async def read(self, base: str) -> ControlReading:
        port = await self.forwarded_port(base)
        _, ip_body = await self._get(base, "/v1/publicip/ip")
        _, status_body = await self._get(base, "/v1/vpn/status")
        public_ip = ip_body.get("public_ip") if isinstance(ip_body, dict) else None
        status = status_body.get("status") if isinstance(status_body, dict) else None
        return ControlReading(forwarded_port=port,
                              public_ip=public_ip if isinstance(public_ip, str) else None,
                              vpn_status=status if isinstance(status, str) else None)


class ControlPoller:
    """Polls every configured VPN's control server, all at once, every `interval()` seconds."""

    def __init__(self, control: GluetunControl, store: StateStore,
                 base_url: Callable[[str], str], vpn_names: Callable[[], tuple[str, ...]],
                 interval: Callable[[], float]) -> None:
        self._control = control
        self._store = store
        self._base_url = base_url
        self._vpn_names = vpn_names
        self._interval = interval
        self._last_error: dict[str, str | None] = {}

    async def run(self) -> None:
        """Poll on the interval, and at once when a VPN's container or state changes (so a VPN
        that just turned healthy has its forwarded port read before engines are placed)."""
        changed = self._store.watch()
        seen: dict[str, tuple[str | None, str]] = {}
        due = 0.0
        while True:
            now = asyncio.get_running_loop().time()
            current: dict[str, tuple[str | None, str]] = {
                n: (r.obs.container_id, r.obs.state) for n, r in self._store.vpns.items()}
            names = [n for n in self._vpn_names() if now >= due or current.get(n) != seen.get(n)]
            seen = current
            if now >= due:
                due = now + self._interval()
            await asyncio.gather(*(self.poll(name) for name in names))
            changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, due - asyncio.get_running_loop().time())):
                    await changed.wait()

    async def poll(self, name: str) -> None:
        record = self._store.vpns.get(name)
        if record is None or record.obs.state in ("missing", "stopped"):
            return
        try:
            reading = await self._control.read(self._base_url(name))
        except ControlApiError as exc:
            error = str(exc)
            if error != self._last_error.get(name):
                log.warning("gluetun_control_error", vpn=name, error=error,
                            auth_failed=isinstance(exc, ControlApiAuthError))
            self._last_error[name] = error
            self._store.set_vpn_control(name, forwarded_port=record.obs.forwarded_port,
                                        public_ip=record.public_ip, status=None, error=error)
            return
        if self._last_error.get(name):
            log.info("gluetun_control_ok", vpn=name)
        self._last_error[name] = None
        self._store.set_vpn_control(name, forwarded_port=reading.forwarded_port,
                                    public_ip=reading.public_ip, status=reading.vpn_status,
                                    error=None)
