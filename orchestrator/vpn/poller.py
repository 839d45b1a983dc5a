"""Polls every configured VPN's Gluetun control server and feeds what it says to the store.

A control server's answers (public IP, forwarded port, tunnel status) change only around a
reconnect, and a reconnect is announced by other signals: the tunnel probe's verdict, Docker's
health and container events, each a change of the VPN's state. So every VPN is read at once when
its container or state changes (a VPN that just turned healthy has its forwarded port read before
engines are placed), and again `FOLLOW_UPS_S` (3, 10 and 30 s) after each such change, while its
values settle (Gluetun negotiates the forwarded port at the end of tunnel-up: the first read
after `healthy` often says 0). Otherwise only every `vpn.health_check_interval_s` (120 s by
default): the ceiling on how late a reconnect no other signal saw (a new exit within one probe
interval) is noticed. A reading that changes nothing wakes nobody (`StateStore.apply_vpn`). A
reading or a failure becomes a sighting of the VPN state machine (`reconcilers.vpn`); an error is
logged once per distinct message. A static forwarded port (`vpn.forwarded_ports`) wins over what
the control server says.
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
from orchestrator.vpn.control import ControlAuthDiagnosed, GluetunControl
from reconcilers.stalls import tunnel_restart_due
from reconcilers.vpn import ControlFailed, ControlRead

log = structlog.get_logger()

FOLLOW_UPS_S = (3.0, 10.0, 30.0)


class ControlPoller:
    """Reads every configured VPN's control server: on a change of the VPN, its follow-ups, and
    all of them at once at the ceiling (`vpn.health_check_interval_s`)."""

    def __init__(self, control: GluetunControl, store: StateStore, config: Callable[[], Config]) -> None:
        self._control = control
        self._store = store
        self._config = config
        self._last_error: dict[str, str | None] = {}
        self._tunnel_restarts: dict[str, float] = {}
        self._restarting: set[asyncio.Task[None]] = set()  # tunnel restarts under way

    def _base_url(self, name: str) -> str:
        config = self._config()
        return f"http://{vpn_host(self._store, name, config.address)}:{config.vpn_api_port}"

    async def run(self) -> None:
        """Poll on the interval, at once when a VPN's container or state changes (so a VPN that
        just turned healthy has its forwarded port read before engines are placed), and again
        `FOLLOW_UPS_S` after that change."""
        changed = self._store.watch()
        seen: dict[str, tuple[str | None, str]] = {}
        follow_ups: dict[str, list[float]] = {}  # by VPN: when to read it again after a change
        due = 0.0
        loop = asyncio.get_running_loop()
        while True:
            # cleared before the VPNs are looked at, never after the polls: a VPN that changes
            # while another's control server is being read must wake the next round at once
            changed.clear()
            now = loop.time()
            current: dict[str, tuple[str | None, str]] = {
                n: (v.container_id, v.state) for n, v in self._store.vpns.items()
            }
            config = self._config()
            names = []
            follow_ups = {n: follow_ups.get(n, []) for n in config.desired.vpn.containers}
            for name, times in follow_ups.items():
                if current.get(name) != seen.get(name):
                    pending = [now + after for after in FOLLOW_UPS_S]
                elif now >= due or (times and times[0] <= now):
                    pending = times
                else:
                    continue
                follow_ups[name] = [at for at in pending if at > now]
                names.append(name)
            seen = current
            if now >= due:
                due = now + config.vpn_poll_interval_s
            await asyncio.gather(*(self.poll(name) for name in names))
            self.restart_stalling_tunnels(time.time())
            wake = min([due, *(times[0] for times in follow_ups.values() if times)])
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, wake - loop.time())):
                    await changed.wait()

    async def poll(self, name: str) -> None:
        vpn = self._store.vpns.get(name)
        if vpn is None or vpn.state in ("missing", "stopped"):
            return
        static = self._config().vpn_forwarded_ports.get(name)
        try:
            reading = await self._control.read(self._base_url(name), port_needed=static is None)
        except ControlApiError as exc:
            self._report(name, str(exc), auth_failed=isinstance(exc, ControlApiAuthError))
            failed = ControlFailed(
                error=str(exc),
                unreachable=isinstance(exc, ControlApiUnreachable),
                problem=exc.problem if isinstance(exc, ControlAuthDiagnosed) else None,
            )
            self._store.apply_vpn(name, failed, time.time())
            return
        self._report(name, reading.port_error, auth_failed=False)
        read = ControlRead(
            forwarded_port=static if static is not None else reading.forwarded_port,
            public_ip=reading.public_ip,
            status=reading.vpn_status,
            port_read=static is not None or reading.port_read,
            port_static=static is not None,
            problem=reading.problem,
        )
        self._store.apply_vpn(name, read, time.time())

    def restart_stalling_tunnels(self, now: float) -> None:
        """`vpn.restart_tunnel_on_stall`: a VPN whose exit is reported stalling, with no engine
        behind it progressing, gets its tunnel restarted, at most once per interval (in a task of
        its own: Gluetun answers once its tunnel stopped and started, which the polls must not
        wait for)."""
        config = self._config()
        plan = self._store.telemetry.last_plan
        if not config.restart_tunnel_on_stall or plan is None:
            return
        stalling = {p.vpn for p in plan.problems if p.code == "vpn_exit_stalling"}
        engines = self._store.observed(now).engines
        for name in config.desired.vpn.containers:
            if not tunnel_restart_due(
                stalling=name in stalling,
                progressing=any(e.vpn == name and e.progressing for e in engines),
                last_restart=self._tunnel_restarts.get(name),
                now=now,
                interval_s=config.tunnel_restart_interval_s,
            ):
                continue
            self._tunnel_restarts[name] = now
            task = asyncio.create_task(self._restart_tunnel(name, config.tunnel_restart_interval_s))
            self._restarting.add(task)
            task.add_done_callback(self._restarting.discard)

    async def _restart_tunnel(self, name: str, interval_s: float) -> None:
        try:
            await self._control.restart_tunnel(self._base_url(name))
        except ControlApiError as exc:
            log.warning("gluetun_tunnel_restart_failed", vpn=name, error=str(exc))
            return
        log.warning(
            "gluetun_tunnel_restarted",
            vpn=name,
            reason="its exit starves P2P (vpn_exit_stalling)",
            next_allowed_in_s=interval_s,
        )

    def _report(self, name: str, error: str | None, *, auth_failed: bool) -> None:
        """Log an error once per distinct message, and its end once."""
        if error == self._last_error.get(name):
            return
        if error is None:
            log.info("gluetun_control_ok", vpn=name)
        else:
            log.warning("gluetun_control_error", vpn=name, error=error, auth_failed=auth_failed)
        self._last_error[name] = error
