"""Keeps the desired state in step with the YAML file the operator edits in place.

The file is checked a few times a second (one `stat`; editors that replace the file and
Kubernetes-style symlink swaps are both seen). A valid edit replaces the configuration at once;
an invalid one is logged with its file, line and key, shown on `/status`, and the last good
configuration stays in force.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from orchestrator.config import Config, load_config
from orchestrator.errors import ConfigError

log = structlog.get_logger()

POLL_INTERVAL_S = 0.25


def _fingerprint(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class ConfigWatcher:
    def __init__(self, path: Path, current: Config,
                 on_change: Callable[[Config, Config], None]) -> None:
        self.path = path
        self.current = current
        self.error: ConfigError | None = None
        self.error_at: float | None = None
        self.loaded_at = time.time()
        self._on_change = on_change
        self._seen = _fingerprint(path)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL_S)
            self.check()

    def check(self) -> None:
        seen = _fingerprint(self.path)
        if seen == self._seen:
            return
        self._seen = seen
        try:
            config = load_config(self.path)
        except ConfigError as exc:
            self.error, self.error_at = exc, time.time()
            log.error("config_rejected", error=str(exc), file=exc.source, line=exc.line,
                      key=exc.key, kept="last good configuration stays in force")
            return
        self.error = None
        if config == self.current:
            return
        previous, self.current = self.current, config
        self.loaded_at = time.time()
        log.info("config_applied", file=str(self.path),
                 min_replicas=config.desired.engines.min_replicas,
                 max_replicas=config.desired.engines.max_replicas, vpn_mode=config.desired.vpn.mode)
        self._on_change(previous, config)
