"""Gluetun's control server client: VPN status, public IP and forwarded port, for every release.

What each release line answers (docs/gluetun-releases.md; the test bed's stand-in answers the
same, tests/integration/test_gluetun_releases.py runs this client over all of them):

- `GET /v1/vpn/status` is served by every release, to every role that has any route: so a 401
  there, and only there, means the credentials are wrong (`ControlApiAuthError`).
- The forwarded port lives at `/v1/portforward` from v3.41 on; v3.39-v3.40 answer that route 401
  whatever the credentials (no role covers it), and ≤ v3.38 400. So on anything but a 200 the old
  route `/v1/openvpn/portforwarded` is asked (v3.41+ answer it with a 301 to the new one, not
  followed). The answer is `{"port": N}`, `{"ports": [...]}` (v3.41, several ports, no `port`
  key) or both (master): `port`, else the first of `ports`; 0 means none. When neither route can
  be read, the reading says so (`port_read`), and the port known before stays.
- `GET /v1/publicip/ip` answers `{"public_ip": ""}` while the tunnel reconnects: unknown.
- Credentials: `X-API-Key` (an `apikey` role) and/or HTTP Basic (a `basic` role), as configured.
  `?api_key=` is not used: only master reads it.

A 401 is diagnosed per release line (`orchestrator.vpn.diagnosis`): the error (status route) or
the reading (another route the daemon needs) carries the Gluetun setting to change.

A failure to connect at all (refused, timed out) is `ControlApiUnreachable`: from a server that
answered in this run and fell silent as the tunnel went down, it means Gluetun itself is stuck,
the one case a forced restart helps early (`reconcilers.pool.restart_due`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog

from orchestrator.errors import ControlApiAuthError, ControlApiError, ControlApiUnreachable
from orchestrator.vpn import diagnosis
from reconcilers.model import ControlProblem

log = structlog.get_logger()

TIMEOUT = aiohttp.ClientTimeout(total=3.0)
# Gluetun answers PUT /v1/vpn/status once the tunnel has stopped (or started): seconds, not ms
PUT_TIMEOUT = aiohttp.ClientTimeout(total=30.0)
STATUS_ROUTE = "/v1/vpn/status"
PUBLIC_IP_ROUTE = "/v1/publicip/ip"
PORT_ROUTES = ("/v1/portforward", "/v1/openvpn/portforwarded")


@dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    api_key: str | None = None
    user: str | None = None
    password: str | None = None

    def headers(self) -> dict[str, str]:
        headers = {"X-API-Key": self.api_key} if self.api_key else {}
        if self.user is not None and self.password is not None:
            headers["Authorization"] = aiohttp.encode_basic_auth(self.user, self.password)
        return headers

    @property
    def kind(self) -> str | None:
        """ "apikey", "basic" or None: what the daemon sends (for diagnosing a 401)."""
        if self.api_key:
            return "apikey"
        return "basic" if self.user is not None and self.password is not None else None


class ControlAuthDiagnosed(ControlApiAuthError):
    """A 401 on the status route, with the Gluetun setting to change."""

    def __init__(self, message: str, problem: ControlProblem) -> None:
        super().__init__(message)
        self.problem = problem


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlReading:
    vpn_status: str | None  # None: the status route gave no usable answer
    public_ip: str | None  # None: unknown (empty while reconnecting, or unreadable)
    forwarded_port: int | None  # None: no forwarded port
    port_read: bool = True  # False: neither port route could be read (`port_error` says why)
    port_error: str | None = None
    problem: ControlProblem | None = None  # a 401 on a route the daemon needs, diagnosed


def port_of(body: Any) -> int | None:
    """The forwarded port of a port route's answer (`port`, else the first of `ports`)."""
    if not isinstance(body, dict):
        raise ValueError(f"expected a JSON object, got {body!r}")
    port = body.get("port")
    if port in (None, 0):
        ports = body.get("ports")
        port = ports[0] if isinstance(ports, list) and ports else None
    if port in (None, 0):
        return None
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"unexpected port value {port!r}")
    return port


class GluetunControl:
    def __init__(self, session: aiohttp.ClientSession, *, credentials: Callable[[], Credentials]) -> None:
        self._session = session
        self._port_route: dict[str, str] = {}  # base URL -> the port route that answered there
        self._credentials = credentials

    async def _get(self, base: str, path: str) -> tuple[int, Any]:
        """(status, decoded JSON body or None). Raises only for a server that cannot be reached."""
        credentials = self._credentials()
        try:
            async with self._session.get(
                base + path,
                headers=credentials.headers(),
                timeout=TIMEOUT,
                allow_redirects=False,
            ) as resp:
                if resp.status != 200:
                    return resp.status, None
                try:
                    return 200, await resp.json(content_type=None)  # Gluetun says text/plain
                except ValueError:
                    return 200, None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ControlApiUnreachable(f"{path}: {type(exc).__name__}: {exc}".rstrip(": ")) from exc

    async def vpn_status(self, base: str) -> str | None:
        status, body = await self._get(base, STATUS_ROUTE)
        if status == 401:
            try:
                unknown: int | None = (await self._get(base, diagnosis.UNKNOWN_ROUTE))[0]
            except ControlApiUnreachable:
                unknown = None
            problem = diagnosis.status_unauthorized(
                credentials=self._credentials().kind, unknown_route_status=unknown
            )
            raise ControlAuthDiagnosed(
                f"{STATUS_ROUTE}: 401 Unauthorized: check vpn.api_key (or vpn.api_user and "
                "vpn.api_password) against the control server's roles",
                problem,
            )
        if status != 200:
            raise ControlApiError(f"{STATUS_ROUTE}: HTTP {status}")
        value = body.get("status") if isinstance(body, dict) else None
        return value if isinstance(value, str) else None

    async def public_ip(self, base: str) -> str | None:
        return (await self._public_ip(base))[0]

    async def _public_ip(self, base: str) -> tuple[str | None, int]:
        status, body = await self._get(base, PUBLIC_IP_ROUTE)
        value = body.get("public_ip") if status == 200 and isinstance(body, dict) else None
        return (value if isinstance(value, str) and value else None), status

    async def forwarded_port(self, base: str) -> tuple[int | None, bool, str | None]:
        """(port, read, why not read)."""
        port, read, error, _ = await self._forwarded_port(base)
        return port, read, error

    async def _forwarded_port(self, base: str) -> tuple[int | None, bool, str | None, tuple[int, int] | None]:
        """(port, read, why not read, both routes' HTTP statuses when neither gave the port)."""
        answers: list[str] = []
        statuses: dict[str, int] = {}
        # the route that gave the port last time first: an older Gluetun costs no failed request
        for path in sorted(PORT_ROUTES, key=lambda route: route != self._port_route.get(base)):
            status, body = await self._get(base, path)
            statuses[path] = status
            if status == 200:
                try:
                    port = port_of(body)
                except ValueError as exc:
                    answers.append(f"{path}: {exc}")
                    continue
                self._port_route[base] = path
                return port, True, None, None
            answers.append(f"{path}: HTTP {status}")
        self._port_route.pop(base, None)
        return None, False, "; ".join(answers), (statuses[PORT_ROUTES[0]], statuses[PORT_ROUTES[1]])

    async def _put(self, base: str, path: str, body: dict[str, str]) -> int:
        credentials = self._credentials()
        try:
            async with self._session.put(
                base + path,
                json=body,
                headers=credentials.headers(),
                timeout=PUT_TIMEOUT,
                allow_redirects=False,
            ) as resp:
                await resp.read()
                return resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ControlApiUnreachable(f"PUT {path}: {type(exc).__name__}: {exc}".rstrip(": ")) from exc

    async def restart_tunnel(self, base: str) -> None:
        """Stop and start the tunnel inside Gluetun (`PUT /v1/vpn/status`), which picks a server
        again from its filters; the container and its network namespace stay."""
        for status in ("stopped", "running"):
            code = await self._put(base, STATUS_ROUTE, {"status": status})
            if code != 200:
                raise ControlApiError(f"PUT {STATUS_ROUTE} {status}: HTTP {code}")

    async def read(self, base: str, *, port_needed: bool = True) -> ControlReading:
        """`port_needed` False: an operator-given port; a 401 on the port routes is no problem."""
        # the three reads at once: their answers wake an idle daemon together, not one by one
        asked = await asyncio.gather(
            self.vpn_status(base), self._public_ip(base), self._forwarded_port(base), return_exceptions=True
        )
        status, ip_read, port_read_as = asked
        # the first failure in the order they were asked in one after the other before
        if isinstance(status, BaseException):
            raise status
        if isinstance(ip_read, BaseException):
            raise ip_read
        if isinstance(port_read_as, BaseException):
            raise port_read_as
        public_ip, ip_status = ip_read
        port, port_read, port_error, port_statuses = port_read_as
        problem = diagnosis.routes_unauthorized(
            public_ip_status=ip_status, port_statuses=port_statuses if port_needed else None
        )
        return ControlReading(
            vpn_status=status,
            public_ip=public_ip,
            forwarded_port=port,
            port_read=port_read,
            port_error=port_error,
            problem=problem,
        )
