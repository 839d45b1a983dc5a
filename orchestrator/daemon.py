"""Wires the parts together and owns every long-running task in one TaskGroup.

Event source, periodic resync, reconcile loop, readiness prober, config watcher and HTTP server
all live in one `asyncio.TaskGroup`: if one fails for good the daemon stops as a whole instead
of limping, and SIGTERM/SIGINT cancel the group and return within a couple of seconds, leaving
the engines running for the next daemon to adopt.
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

from orchestrator.config import Config
from orchestrator.config_watcher import ConfigWatcher
from orchestrator.docker_gateway import DockerGateway
from orchestrator.endpoints import vpn_host
from orchestrator.errors import DockerError
from orchestrator.event_source import EventSource
from orchestrator.executor import Executor
from orchestrator.gluetun_control import ControlPoller, GluetunControl
from orchestrator.http_api import make_app
from orchestrator.logs import configure_logging
from orchestrator.metrics import observe_hide_latency
from orchestrator.readiness import ReadinessProber
from orchestrator.reconcile_loop import ReconcileLoop
from orchestrator.state import StateStore
from reconcilers.model import Desired

log = structlog.get_logger()


class Daemon:
    """The running daemon's parts; the HTTP API reads them, `run()` drives them."""

    def __init__(self, config: Config, config_path: Path | None = None,
                 docker_url: str | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.started_at = time.time()
        self.store = StateStore(restart_on_reconnect=config.desired.vpn.restart_engines_on_reconnect)
        self.gateway = DockerGateway(docker_url)
        self.watcher = ConfigWatcher(config_path, config, self._config_changed) if config_path else None
        self.events = EventSource(self.gateway, self.store, self.vpn_names,
                                  lambda: self.config.desired.engines.pool, observe_hide_latency)
        self.executor: Executor | None = None
        self.loop: ReconcileLoop | None = None
        self.prober: ReadinessProber | None = None
        self._tasks: asyncio.TaskGroup | None = None

    @property
    def desired(self) -> Desired:
        return self.config.desired

    def vpn_names(self) -> tuple[str, ...]:
        return self.config.desired.vpn.containers

    def _config_changed(self, previous: Config, config: Config) -> None:
        old_pool = previous.desired.engines.pool
        if config.desired.engines.pool != old_pool:
            log.warning("config_needs_restart", keys="engines.pool", kept=old_pool,
                        hint="a new pool name orphans the running engines; restart to apply")
            engines = dataclasses.replace(config.desired.engines, pool=old_pool)
            config = dataclasses.replace(config, desired=dataclasses.replace(config.desired,
                                                                             engines=engines))
        self.config = config
        self.store.restart_on_reconnect = config.desired.vpn.restart_engines_on_reconnect
        if config.log_level != previous.log_level:
            configure_logging(config.log_level)
        if config.api != previous.api:
            log.warning("config_needs_restart", keys="api.*", hint="restart the daemon to apply")
        if self.prober is not None:
            self.prober.address = config.address
        if set(config.desired.vpn.containers) != set(previous.desired.vpn.containers):
            for gone in set(self.store.vpns) - set(config.desired.vpn.containers):
                self.store.vpns.pop(gone)
            if self._tasks is not None:  # owned by the daemon's TaskGroup, like every task
                self._tasks.create_task(self._resync_quietly(), name="resync-after-config")
        self.store.changed()

    def _control_url(self, name: str) -> str:
        return f"http://{vpn_host(self.store, name, self.config.address)}:{self.config.vpn_api_port}"

    async def _resync_quietly(self) -> None:
        try:
            await self.events.resync()
        except DockerError as exc:
            log.warning("resync_failed", error=str(exc))

    async def run(self, *, install_signal_handlers: bool = True) -> None:
        log.info("daemon_starting", api=f"{self.config.api.host}:{self.config.api.port}",
                 vpn_mode=self.desired.vpn.mode, min_replicas=self.desired.engines.min_replicas)
        stop = asyncio.Event()
        if install_signal_handlers:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
        runner = web.AppRunner(make_app(self), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.config.api.host, self.config.api.port)
        await site.start()
        log.info("api_listening", host=self.config.api.host, port=self.config.api.port)
        for name in self.vpn_names():
            log.info(f"Gluetun monitor started for container '{name}'", vpn=name)
        try:
            async with aiohttp.ClientSession() as session:
                await self._run_tasks(session, stop)
        finally:
            await runner.cleanup()
            await self.gateway.close()
            log.info("daemon_stopped")

    async def _run_tasks(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                self.executor = Executor(self.gateway, self.store, lambda: self.desired, tasks)
                self.loop = ReconcileLoop(self.store, self.executor, lambda: self.desired)
                self.prober = ReadinessProber(self.store, session, self.config.address,
                                              lambda: self.config.engine_check_interval_s)
                tasks.create_task(self.events.run(), name="event-source")
                tasks.create_task(self.events.run_periodic_resync(), name="resync")
                tasks.create_task(self.loop.run(), name="reconcile")
                tasks.create_task(self.prober.run(), name="readiness")
                tasks.create_task(self.prober.run_liveness(), name="liveness")
                control = GluetunControl(session, api_key=lambda: self.config.vpn_api_key)
                poller = ControlPoller(control, self.store, self._control_url, self.vpn_names,
                                       lambda: self.config.vpn_poll_interval_s)
                tasks.create_task(poller.run(), name="gluetun-control")
                if self.watcher is not None:
                    tasks.create_task(self.watcher.run(), name="config-watcher")
                await stop.wait()
                log.info("daemon_stopping", reason="signal")
                raise _Stop
        except* _Stop:
            pass


class _Stop(Exception):
    """Raised inside the TaskGroup to cancel every task on shutdown."""
