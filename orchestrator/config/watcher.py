"""Holds the configuration in force and keeps it in step with the YAML file the operator edits.

Every part of the daemon reads the config through `ConfigWatcher.current` (one getter, no copies
patched on reload). The file's folder is watched through inotify (`asyncinotify`: pure Python,
asyncio-native, no thread and no wake-up between events); any event there (a write, an editor
replacing the file, a Kubernetes-style symlink swap) starts a few `stat` checks, and the file is
read once a change has settled (the same `stat` two checks in a row), never half-written. A file
system without inotify events (some network and FUSE mounts) falls back to one `stat` every
`FALLBACK_POLL_S`, and a slow safety `stat` runs anyway every `SAFETY_POLL_S`; an empty file at run
time is an error. A valid edit is vetted against the config in force (keys that need a restart keep
their value, with a warning), then replaces it at once; an invalid one is logged with its file,
line and key, shown on `/status`, and the last good configuration stays in force. Each new file is
compared with the config *in force*, so an edit refused once stays refused on every later edit
until the daemon restarts. A valid edit the world cannot take yet (a VPN container name that does
not exist) is *held*: reported, the config in force unchanged, and put in force once it can.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog
from asyncinotify import Inotify, Mask

from orchestrator.config.checks import is_loopback_host
from orchestrator.config.loader import load_config
from orchestrator.config.schema import Config
from orchestrator.errors import ConfigError

log = structlog.get_logger()

POLL_INTERVAL_S = 0.25  # between the checks that see a change settle
FALLBACK_POLL_S = 2.0  # no inotify at all: one stat this often
SAFETY_POLL_S = 60.0  # with inotify: a file system whose events never come is still read
WATCHED = (
    Mask.CLOSE_WRITE
    | Mask.MOVED_TO
    | Mask.MOVED_FROM
    | Mask.CREATE
    | Mask.DELETE
    | Mask.ATTRIB
    | Mask.MODIFY
    | Mask.DELETE_SELF
    | Mask.MOVE_SELF
)


def _fingerprint(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


@dataclass(frozen=True, slots=True)
class _RestartOnly:
    keys: str
    get: Callable[[Config], object]
    keep: Callable[[Config, Config], Config]  # (loaded, current) -> loaded with current's value
    hint: str


RESTART_ONLY = (
    _RestartOnly(
        "engines.pool",
        lambda c: c.desired.engines.pool,
        lambda new, cur: dataclasses.replace(
            new,
            desired=dataclasses.replace(
                new.desired, engines=dataclasses.replace(new.desired.engines, pool=cur.desired.engines.pool)
            ),
        ),
        "a new pool name orphans the running engines; restart to apply",
    ),
    _RestartOnly(
        "api.host, api.port",
        lambda c: f"{c.api.host}:{c.api.port}",
        lambda new, cur: dataclasses.replace(
            new, api=dataclasses.replace(new.api, host=cur.api.host, port=cur.api.port)
        ),
        "restart the daemon to apply",
    ),
    _RestartOnly(
        "state_dir",
        lambda c: c.state_dir,
        lambda new, cur: dataclasses.replace(new, state_dir=cur.state_dir),
        "the stream journal is opened at start-up; restart to apply",
    ),
)


def keep_restart_only_keys(current: Config, loaded: Config) -> Config:
    """`loaded`, except for the keys that apply only at start-up, which keep their value in force.
    Always compared with the config in force, so a refused change stays refused through every
    later edit (and undoing it is no change at all)."""
    vetted = loaded
    for key in RESTART_ONLY:
        if key.get(loaded) != key.get(current):
            log.warning("config_needs_restart", keys=key.keys, kept=str(key.get(current)), hint=key.hint)
            vetted = key.keep(vetted, current)
    return vetted


class ConfigWatcher:
    """`hold(current, wanted)` vets a valid edit against the world: a reason to keep it waiting
    (a VPN container that does not exist yet) or None. A held edit is tried again on every
    `recheck()` and put in force as soon as nothing holds it; `on_held` hears of each new one."""

    def __init__(
        self,
        current: Config,
        path: Path | None = None,
        *,
        on_change: Callable[[Config, Config], None] = lambda previous, config: None,
        hold: Callable[[Config, Config], str | None] = lambda current, wanted: None,
        on_held: Callable[[Config], None] = lambda wanted: None,
        on_rejected: Callable[[ConfigError], None] = lambda error: None,
    ) -> None:
        self.path = path
        self._current = current
        self._wanted = current
        self.error: ConfigError | None = None
        self.error_at: float | None = None
        self.held: str | None = None
        self.loaded_at = time.time()
        self._on_change = on_change
        self._hold = hold
        self._on_held = on_held
        self._on_rejected = on_rejected
        self._seen = _fingerprint(path) if path is not None else None
        self._changing: tuple[int, int, int] | None = None

    @property
    def wanted(self) -> Config:
        """The file's latest valid configuration: the one in force, unless it is held."""
        return self._wanted

    @property
    def current(self) -> Config:
        """The configuration in force."""
        return self._current

    async def run(self, safety_poll_s: float = SAFETY_POLL_S) -> None:
        if self.path is None:
            return  # nothing to watch: the config given at start stays in force
        try:
            inotify = Inotify()
            inotify.add_watch(self.path.parent, WATCHED)
        except OSError as exc:
            log.warning("config_watch_polling", reason=f"no inotify here ({exc})", every_s=FALLBACK_POLL_S)
            await self._poll(FALLBACK_POLL_S)
            return
        with inotify:
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(safety_poll_s):
                        await inotify.get()
                await self._settle_change()

    async def _settle_change(self) -> None:
        """Check until the file is unchanged two checks in a row (read once settled)."""
        self.check()
        while self._changing is not None:
            await asyncio.sleep(POLL_INTERVAL_S)
            self.check()

    async def _poll(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            await self._settle_change()

    def check(self) -> None:
        """Read the file once a change of it has settled: unchanged since the previous check
        (one poll interval), so an editor's write under way is not read half-written."""
        if self.path is None:
            return
        seen = _fingerprint(self.path)
        if seen == self._seen:
            self._changing = None
            return
        if seen != self._changing:
            self._changing = seen  # changed since the last look: look again next time
            return
        self._seen, self._changing = seen, None
        try:
            loaded = load_config(self.path, allow_empty=False)
        except ConfigError as exc:
            self.error, self.error_at = exc, time.time()
            log.error(
                "config_rejected",
                error=str(exc),
                file=exc.source,
                line=exc.line,
                key=exc.key,
                kept="last good configuration stays in force",
            )
            self._on_rejected(exc)
            return
        self.error = None
        self.apply(loaded)

    def apply(self, loaded: Config) -> bool:
        """Put a valid configuration in force (vetted first); False when nothing changes now."""
        vetted = keep_restart_only_keys(self._current, loaded)
        api = vetted.api
        if not (api.api_key or api.allow_unauthenticated or is_loopback_host(api.host)):
            # the file asked for a loopback address (applied at restart only) and no key: the
            # address in force stays reachable from other machines, so the key must stay too
            self.error = ConfigError(
                f"the API keeps listening on {api.host} until a restart, and this edit removes "
                "api.api_key: anyone on the network could write. Keep the key until the "
                "restart that applies the new api.host",
                source=str(self.path) if self.path else "<reload>",
                key="api.api_key",
            )
            self.error_at = time.time()
            log.error("config_rejected", error=str(self.error), kept="last good configuration stays in force")
            return False
        self._wanted = vetted
        return self._settle(announce=True)

    def recheck(self) -> bool:
        """Try a held edit again (what held it may have changed); True when it went in force."""
        return self.held is not None and self._settle(announce=False)

    def _settle(self, *, announce: bool) -> bool:
        wanted = self._wanted
        reason = self._hold(self._current, wanted) if wanted != self._current else None
        if reason is not None:
            if announce or reason != self.held:
                log.warning("config_held", reason=reason, kept="the configuration in force stays")
                self.held = reason
                self._on_held(wanted)
            return False
        if self.held is not None:
            log.info("config_released", hint="what held the edit is resolved")
            self.held = None
        if wanted == self._current:
            return False
        previous, self._current = self._current, wanted
        self.loaded_at = time.time()
        log.info(
            "config_applied",
            file=str(self.path) if self.path else None,
            min_replicas=wanted.desired.engines.min_replicas,
            max_replicas=wanted.desired.engines.max_replicas,
            vpn_mode=wanted.desired.vpn.mode,
        )
        self._on_change(previous, wanted)
        return True
