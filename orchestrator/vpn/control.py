"""Gluetun's control server client: forwarded port, public IP and VPN status.

Docker's health is the primary signal of a VPN's state; the control server adds what Docker
cannot see: the forwarded port (a change means the forwarded engine must be recreated), the
public IP, and a short internal VPN reconnect. A 401 means the API key is wrong, which is reported as a
credentials problem, never as the VPN being down. Newer Gluetun serves `/v1/portforward`; older
releases only `/v1/openvpn/portforwarded` (newer ones answer that with a 301), so the new route is
tried first and the old one is the fallback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog

from orchestrator.errors import ControlApiAuthError, ControlApiError

log = structlog.get_logger()

TIMEOUT = aiohttp.ClientTimeout(total=3.0)
PORT_ROUTES = ("/v1/portforward", "/v1/openvpn/portforwarded")


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlReading:
    forwarded_port: int | None
    public_ip: str | None
    vpn_status: str | None


class GluetunControl:
    def __init__(self, session: aiohttp.ClientSession, *, api_key: Callable[[], str | None]) -> None:
        self._session = session
        self._api_key = api_key

    async def _get(self, base: str, path: str) -> tuple[int, Any]:
        try:
            key = self._api_key()
            headers = {"X-API-Key": key} if key else {}
            async with self._session.get(
                base + path, headers=headers, timeout=TIMEOUT, allow_redirects=False
            ) as resp:
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
        return ControlReading(
            forwarded_port=port,
            public_ip=public_ip if isinstance(public_ip, str) else None,
            vpn_status=status if isinstance(status, str) else None,
        )
