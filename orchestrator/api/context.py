"""What the HTTP API may see of the running daemon: the store, the config in force, start time.

Handlers read and write the state store only through this small frozen context (never the
`Daemon`), so the API layer depends on nothing above it and its tests build one in a line.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from orchestrator.config import Config
from orchestrator.config.watcher import ConfigWatcher
from orchestrator.state.store import StateStore
from reconcilers.model import Desired


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiContext:
    store: StateStore
    watcher: ConfigWatcher  # holds the config in force, its path and its last error
    started_at: float

    @property
    def config(self) -> Config:
        return self.watcher.current

    @property
    def desired(self) -> Desired:
        return self.watcher.current.desired


CONTEXT: web.AppKey[ApiContext] = web.AppKey("context")
