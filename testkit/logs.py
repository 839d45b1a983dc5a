"""The log entries of some events, from what `structlog.testing.capture_logs()` caught: the tests
that hold the daemon to the events docs/operations.md lists (operators grep and alert on them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def logged(logs: Sequence[Mapping[str, Any]], *events: str) -> list[Mapping[str, Any]]:
    """The entries of `events` (each a dict of `event`, `log_level` and the fields), in order."""
    return [entry for entry in logs if entry["event"] in events]
