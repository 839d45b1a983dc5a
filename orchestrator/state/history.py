"""The history of what the daemon did and why: the answer to "why was this engine restarted?"
without reading logs.

Each entry says when, what (`kind`), to what (`target`, with the engine and VPN it concerns),
why (`reason`, in words), what the daemon had just seen when it decided (`trigger`, e.g.
"Docker `health_status: unhealthy` of gluetun1 at 12:03:04.118") and how it ended (`outcome`).
The store records them (hidden and shown engines from changes of the visible set, VPN
transitions), the executor (actions on containers), provisioning (an engine handed out) and the
daemon's configuration watcher (applied, rejected, held). The last `HISTORY_KEPT` are kept in
memory and in the journal (`journal.py`), so a restarted daemon still shows what happened
before it; `seq` numbers entries so a live stream can resume (SSE's `Last-Event-ID`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

HISTORY_KEPT = 500  # about a day of a busy pool's actions; older entries are dropped (FIFO)

HistoryKind = Literal[
    "created",
    "restarted",
    "recreated",
    "removed",
    "rollout_step",
    "hidden",
    "shown",
    "provisioned",
    "vpn_restarted",
    "vpn_unhealthy",
    "vpn_recovered",
    "vpn_reconnected",
    "probe_created",
    "probe_removed",
    "probe_restarted",
    "config_applied",
    "config_rejected",
    "config_held",
]
HISTORY_KINDS: tuple[str, ...] = HistoryKind.__args__  # type: ignore[attr-defined]


def clock(at: float) -> str:
    """A time as the history's words say it: `12:03:04.118` (UTC)."""
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S.%f")[:-3]


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryEntry:
    seq: int
    at: float
    kind: str  # a HistoryKind; a plain str so entries of a newer daemon read back as they are
    target: str
    reason: str
    trigger: str | None = None
    outcome: str = "done"
    engine: str | None = None  # the engine's container name, when it concerns one
    vpn: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    """The latest thing the daemon saw: the trigger of what it decides next."""

    text: str
    at: float

    def words(self) -> str:
        return f"{self.text} at {clock(self.at)}"


class History:
    """The bounded, ordered log of entries (in memory; the store writes each to the journal)."""

    def __init__(self, kept: int = HISTORY_KEPT) -> None:
        self._entries: deque[HistoryEntry] = deque(maxlen=kept)
        self._seq = 0

    @property
    def bound(self) -> int:
        return self._entries.maxlen or 0

    @property
    def last_seq(self) -> int:
        return self._seq

    def load(self, entries: Iterable[HistoryEntry]) -> None:
        """Entries read back from the journal (oldest first); numbering continues after them."""
        for entry in entries:
            self._entries.append(entry)
            self._seq = max(self._seq, entry.seq)

    def add(
        self,
        kind: HistoryKind,
        target: str,
        reason: str,
        *,
        at: float,
        trigger: str | None = None,
        outcome: str = "done",
        engine: str | None = None,
        vpn: str | None = None,
    ) -> HistoryEntry:
        self._seq += 1
        entry = HistoryEntry(
            seq=self._seq,
            at=at,
            kind=kind,
            target=target,
            reason=reason,
            trigger=trigger,
            outcome=outcome,
            engine=engine,
            vpn=vpn,
        )
        self._entries.append(entry)
        return entry

    def select(
        self,
        *,
        engine: str | None = None,
        vpn: str | None = None,
        kinds: frozenset[str] = frozenset(),
        since: float | None = None,
        after_seq: int = 0,
        limit: int | None = None,
    ) -> list[HistoryEntry]:
        """Entries matching every filter given, oldest first (`limit`: the newest that many)."""
        out = [
            e
            for e in self._entries
            if e.seq > after_seq
            and (engine is None or engine in (e.engine, e.target))
            and (vpn is None or e.vpn == vpn)
            and (not kinds or e.kind in kinds)
            and (since is None or e.at >= since)
        ]
        return out[-limit:] if limit is not None else out
