"""What `/engines` last served, kept for a daemon that restarts while Docker does not answer.

A restarted daemon learns its engines from Docker. When Docker hangs (a stuck containerd, a
daemon restarted into an outage), it would list no engine at all although every engine still
serves: the proxy would turn every viewer away. So the listing `/engines` served is written to
the journal whenever it changes, and until Docker has answered once since the start, the API
serves those of its engines that still answer their own HTTP API (checked by
`orchestrator.workers.last_known`), marked on `/status` as `engines_source: last_known`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from orchestrator.state.journal import StreamJournal

# what changes on every health check or stream: not kept (each change would rewrite the row),
# served as "none known" from the fallback
VOLATILE: dict[str, Any] = {
    "streams": [],
    "stream_count": 0,
    "last_seen": None,
    "last_health_check": None,
    "last_stream_usage": None,
}


class LastServed:
    def __init__(self, journal: StreamJournal, changed: Callable[[], None]) -> None:
        self._journal = journal
        self._changed = changed
        self._body = ""
        self.listing: tuple[dict[str, Any], ...] = ()  # as the journal had it at start
        self.listed_at: float | None = None
        # the engines of `listing` that answer, served while Docker has not answered (None: not)
        self.fallback: tuple[dict[str, Any], ...] | None = None

    def load(self, listing: list[dict[str, Any]], at: float | None) -> None:
        self.listing, self.listed_at = tuple(listing), at

    def remember(self, listing: list[dict[str, Any]]) -> None:
        """`/engines` serves `listing` now: kept (without its volatile fields) when the engines,
        their addresses or their state differ from what was kept last."""
        body = json.dumps([{k: v for k, v in e.items() if k not in VOLATILE} for e in listing])
        if body != self._body:
            self._body = body
            self._journal.remember_served(body, time.time())

    @staticmethod
    def as_served(entry: dict[str, Any]) -> dict[str, Any]:
        """A kept entry as `/engines` serves it: every field there, the volatile ones unknown."""
        return {**VOLATILE, **entry}

    def serve_fallback(self, answering: tuple[dict[str, Any], ...] | None) -> None:
        if answering != self.fallback:
            self.fallback = answering
            self._changed()
