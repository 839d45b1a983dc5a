"""Wires the parts together and owns every long-running task in one TaskGroup.

Every part is built before the TaskGroup starts (the ones that need the HTTP client session as
soon as it is open), so no part is ever half there. Event source, periodic resync, reconcile
loop, executor, readiness prober, control-server poller, config watcher and HTTP server all live
in one `asyncio.TaskGroup`: if one fails for good the daemon stops as a whole instead of
limping, and SIGTERM/SIGINT cancel the group and return within a couple of seconds, leaving the
engines running for the next daemon to adopt.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import time
from pathlib import Path

import aiohttp
import structlog
from aiohttp import web

from orchestrator.api.access import access_summary
from orchestrator.api.address_file import write_address_file
from orchestrator.api.app import make_app
from orchestrator.api.context import ApiContext
from orchestrator.api.metrics import observe_hide_latency
from orchestrator.config import Config
from orchestrator.config.watcher import ConfigWatcher
from orchestrator.docker.gateway import DockerGateway
from orchestrator.errors import ConfigError
from orchestrator.logs import configure_logging
from orchestrator.state.journal import StreamJournal
from orchestrator.state.store import StateStore
from orchestrator.vpn.control import Credentials, GluetunControl
from orchestrator.vpn.poller import ControlPoller
from orchestrator.workers.event_source import EventSource
from orchestrator.workers.executor import Executor
from orchestrator.workers.image_puller import ImagePuller
from orchestrator.workers.last_known import LastKnownEngines
from orchestrator.workers.readiness import ReadinessProber
from orchestrator.workers.reconcile_loop import ReconcileLoop
from orchestrator.workers.watchdog import Watchdog
from reconcilers.model import Desired
from reconcilers.vpn_list import unknown_vpns

log = structlog.get_logger()

HTTP_SHUTDOWN_TIMEOUT_S = 1.0
KEEPALIVE_MARGIN_S = 15.0


class Daemon:
    """The running daemon's parts; `run()` drives them."""

    def __init__(
        self,
        config: Config,
        config_path: Path | None = None,
        docker_url: str | None = None,
        *,
        state_dir: Path | None = None,
    ) -> None:
        self.watcher = ConfigWatcher(
            config,
            config_path,
            on_change=self._config_changed,
            hold=self._hold_unknown_vpns,
            on_held=self._config_held,
            on_rejected=self._config_rejected,
        )
        self.journal = StreamJournal(state_dir or config.state_dir)
        self.store = StateStore(
            restart_on_reconnect=lambda: self.config.desired.vpn.restart_engines_on_reconnect,
            journal=self.journal,
            configured_vpns=lambda: self.config.desired.vpn.containers,
        )
        self.gateway = DockerGateway(docker_url)
        self.events = EventSource(
            self.gateway,
            self.store,
            lambda: self.config,
            on_hidden=observe_hide_latency,
            vpn_names=self._followed_vpns,
        )
        self.executor = Executor(self.gateway, self.store, lambda: self.config.desired)
        self.loop = ReconcileLoop(self.store, self.executor, self._desired)
        self.puller = ImagePuller(self.store, self.gateway, lambda: self.config)
        self.api = ApiContext(store=self.store, watcher=self.watcher, started_at=time.time())

    @property
    def config(self) -> Config:
        return self.watcher.current

    def _desired(self) -> Desired:
        """The config's desired state, with the image ID the tag resolved to at the last pull
        (engines.pull other than missing): engines running another image are rolled over."""
        desired = self.config.desired
        image_id = self.store.desired_image_id(desired.engines.image)
        if image_id is None:
            return desired
        return dataclasses.replace(desired, engines=dataclasses.replace(desired.engines, image_id=image_id))

    def _followed_vpns(self) -> tuple[str, ...]:
        """The VPNs in force, and those a held edit waits for."""
        in_force = self.config.desired.vpn.containers
        return in_force + tuple(n for n in self.watcher.wanted.desired.vpn.containers if n not in in_force)

    def _hold_unknown_vpns(self, current: Config, wanted: Config) -> str | None:
        existing = [n for n, v in self.store.vpns.items() if v.state != "missing"]
        unknown = unknown_vpns(current.desired.vpn.containers, wanted.desired.vpn.containers, existing)
        if not unknown:
            return None
        return (
            f"vpn.containers names {', '.join(repr(n) for n in unknown)}, but no container has that "
            "name: the edit waits (the VPNs in force stay) until it exists, or the YAML changes"
        )

    async def _recheck_held_edits(self) -> None:
        """A held edit goes in force once the VPN container it names appears."""
        changed = self.store.watch()
        while True:
            await changed.wait()
            changed.clear()
            self.watcher.recheck()

    def _config_held(self, wanted: Config) -> None:
        self.store.record("config_held", self._config_name(), self.watcher.held or "held", trigger=None)
        self.events.request_resync()

    def _config_rejected(self, error: ConfigError) -> None:
        where = f"{error.source or self._config_name()}" + (f" line {error.line}" if error.line else "")
        self.store.record(
            "config_rejected",
            where,
            str(error),
            trigger=f"{self._config_name()} changed",
            outcome="the last good configuration stays in force",
        )

    def _config_name(self) -> str:
        return str(self.watcher.path) if self.watcher.path else "configuration"

    def _config_changed(self, previous: Config, config: Config) -> None:
        self.puller.config_changed()
        self.store.record(
            "config_applied",
            self._config_name(),
            "a valid edit of the configuration file",
            trigger=f"{self._config_name()} changed",
        )
        if config.log_level != previous.log_level:
            configure_logging(config.log_level)
        if set(config.desired.vpn.containers) != set(previous.desired.vpn.containers):
            for gone in set(self.store.vpns) - set(self._followed_vpns()):
                self.store.forget_vpn(gone)
            self.events.request_resync()
        self.store.changed()

    def _control_credentials(self) -> Credentials:
        config = self.config
        return Credentials(
            api_key=config.vpn_api_key, user=config.vpn_api_user, password=config.vpn_api_password
        )

    async def run(self, *, install_signal_handlers: bool = True) -> None:
        config = self.config
        log.info(
            "daemon_starting",
            api=f"{config.api.host}:{config.api.port}",
            vpn_mode=config.desired.vpn.mode,
            min_replicas=config.desired.engines.min_replicas,
        )
        self.store.restore_streams()  # before the API answers: busy engines are known at once
        stop = asyncio.Event()
        if install_signal_handlers:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
        runner = web.AppRunner(
            make_app(self.api),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=HTTP_SHUTDOWN_TIMEOUT_S,
        )
        await runner.setup()
        site = web.TCPSite(runner, config.api.host, config.api.port)
        await site.start()
        log.info("api_listening", host=config.api.host, port=config.api.port)
        write_address_file(config.api.host, config.api.port)
        open_to_all, access = access_summary(config.api)
        (log.warning if open_to_all else log.info)("api_access", **access)
        for name in config.desired.vpn.containers:
            log.info(f"Gluetun monitor started for container '{name}'", vpn=name)
        try:
            connector = aiohttp.TCPConnector(keepalive_timeout=client_keepalive_s(config))
            async with aiohttp.ClientSession(connector=connector) as session:
                await self._run_tasks(session, stop)
        finally:
            await runner.cleanup()
            await self.gateway.close()
            self.journal.close()
            log.info("daemon_stopped")

    async def _run_tasks(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        prober = ReadinessProber(self.store, session, lambda: self.config)
        control = GluetunControl(session, credentials=self._control_credentials)
        poller = ControlPoller(control, self.store, lambda: self.config)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self.events.run(), name="event-source")
                tasks.create_task(self.events.run_periodic_resync(), name="resync")
                tasks.create_task(self.events.probe_logs.run(), name="probe-logs")
                tasks.create_task(self.executor.run(), name="executor")
                tasks.create_task(self.loop.run(), name="reconcile")
                tasks.create_task(prober.run(), name="readiness")
                tasks.create_task(prober.run_liveness(), name="liveness")
                tasks.create_task(prober.run_stream_checks(), name="stream-checks")
                tasks.create_task(poller.run(), name="gluetun-control")
                tasks.create_task(self.watcher.run(), name="config-watcher")
                tasks.create_task(self._recheck_held_edits(), name="held-edits")
                tasks.create_task(Watchdog(self.store).run(), name="watchdog")
                tasks.create_task(LastKnownEngines(self.store, session).run(), name="last-known")
                tasks.create_task(self.puller.run(), name="image-puller")
                await stop.wait()
                log.info("daemon_stopping", reason="signal")
                raise _Stop
        except* _Stop:
            pass


def client_keepalive_s(config: Config) -> float:
    """How long an idle connection to an engine or a control server is kept: past the rounds
    that reuse it (aiohttp's default, 15 s, is shorter than the liveness and control
    rounds, so each round connected again). A server that closes it first is simply dialled."""
    return max(config.engine_check_interval_s, config.vpn_poll_interval_s) + KEEPALIVE_MARGIN_S


class _Stop(Exception):
    """Raised inside the TaskGroup to cancel every task on shutdown."""
