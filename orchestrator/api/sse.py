"""Server-sent events: how the status page and the history's live stream reach a browser.

One long response per client (`text/event-stream`); the handler sleeps on the store's change
event and writes only when what it sends changed, so an open page costs nothing while nothing
happens but a comment line every `KEEPALIVE_S` (which also finds clients that went away). The
`retry` line asks the browser to reconnect one second after the daemon went (a restart).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from aiohttp import web

from orchestrator.state.store import StateStore

KEEPALIVE_S = 15.0
RETRY_MS = 1000


def event(name: str, data: str, seq: int | None = None) -> bytes:
    """One event; every line of `data` gets its own `data:` field (the browser rejoins them)."""
    head = f"id: {seq}\n" if seq is not None else ""
    lines = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"{head}event: {name}\n{lines}\n".encode()


async def follow(
    request: web.Request, store: StateStore, produce: Callable[[], bytes | None]
) -> web.StreamResponse:
    """Answer with an event stream: `produce()` at once and after every change of the store
    (None: nothing new to send), until the client goes or the daemon stops."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # a reverse proxy must not hold the events back
        }
    )
    await response.prepare(request)
    changed = store.watch()
    try:
        await response.write(f"retry: {RETRY_MS}\n\n".encode())
        while True:
            changed.clear()
            chunk = produce()
            if chunk:
                await response.write(chunk)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(KEEPALIVE_S):
                    await changed.wait()
                    continue
            await response.write(b": keep-alive\n\n")
    except (ConnectionResetError, ConnectionError):
        pass  # the client went away
    finally:
        store.unwatch(changed)
    return response
