"""`GET /history` and its live stream `GET /history/stream`: what the daemon did and why.

Both read the store's bounded history (`orchestrator/state/history.py`) with the same filters:
`engine` (a container name), `vpn`, `kind` (one or more, comma-separated), `since` (RFC 3339
with a zone). The stream sends every matching entry as an SSE event `entry`
whose `id` is the entry's `seq`: a client that reconnects with `Last-Event-ID` (browsers do it
by themselves) gets what it missed first, then each new entry as it is recorded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from aiohttp import web

from orchestrator.api.context import CONTEXT
from orchestrator.api.responses import json_error
from orchestrator.api.routing import add_get
from orchestrator.api.sse import Pulse, event, follow
from orchestrator.api.views import history_view
from orchestrator.state.history import HISTORY_KINDS, HistoryEntry


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryQuery:
    engine: str | None = None
    vpn: str | None = None
    kinds: frozenset[str] = frozenset()
    since: float | None = None


class BadQuery(ValueError):
    pass


def _since(text: str) -> float:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise BadQuery(f"since={text!r} is not an RFC 3339 time") from exc
    if parsed.tzinfo is None:
        raise BadQuery(f"since={text!r} has no time zone")
    return parsed.timestamp()


def parse_query(request: web.Request) -> HistoryQuery:
    q = request.query
    for name in ("engine", "vpn", "kind", "since"):
        if len(q.getall(name, [])) > 1:
            raise BadQuery(f"{name} given more than once")
        if name in q and not q[name].strip():
            raise BadQuery(f"{name} is empty")
    kinds = frozenset(q.get("kind", "").split(",")) - {""}
    unknown = sorted(kinds - set(HISTORY_KINDS))
    if unknown:
        raise BadQuery(f"unknown kind {', '.join(unknown)}; one of {', '.join(HISTORY_KINDS)}")
    return HistoryQuery(
        engine=q.get("engine"),
        vpn=q.get("vpn"),
        kinds=kinds,
        since=_since(q["since"]) if "since" in q else None,
    )


def _select(request: web.Request, query: HistoryQuery, after_seq: int = 0) -> list[HistoryEntry]:
    return request.app[CONTEXT].store.history.select(
        engine=query.engine, vpn=query.vpn, kinds=query.kinds, since=query.since, after_seq=after_seq
    )


async def history(request: web.Request) -> web.Response:
    try:
        query = parse_query(request)
    except BadQuery as exc:
        return json_error(400, "invalid_query", str(exc))
    kept = request.app[CONTEXT].store.history
    return web.json_response(
        {"bound": kept.bound, "entries": [history_view(e) for e in _select(request, query)]}
    )


async def history_stream(request: web.Request) -> web.StreamResponse:
    try:
        query = parse_query(request)
        last = request.headers.get("Last-Event-ID", "0").strip() or "0"
        if not last.isdigit():
            raise BadQuery("Last-Event-ID is not an entry's seq")
    except BadQuery as exc:
        return json_error(400, "invalid_query", str(exc))
    sent = int(last)

    def produce() -> bytes | None:
        nonlocal sent
        new = _select(request, query, after_seq=sent)
        if not new:
            return None
        sent = new[-1].seq
        return b"".join(event("entry", json.dumps(history_view(e)), e.seq) for e in new)

    return await follow(request, request.app[HISTORY_PULSE], produce)


HISTORY_PULSE: web.AppKey[Pulse] = web.AppKey("history_pulse")


def add_history_routes(app: web.Application) -> None:
    store = app[CONTEXT].store
    app[HISTORY_PULSE] = Pulse(store, lambda: store.history.last_seq)
    add_get(app, "/history", history)
    add_get(app, "/history/stream", history_stream)
