"""Server-sent events: how the status page and the history's live stream reach a browser.

One long response per client (`text/event-stream`), written only when what it sends changed.
Every open stream of one kind sleeps on one `Pulse`: a single task watches the store for all of
them and wakes them only when what they show moved, and beats once every `KEEPALIVE_S` for all
at once (a comment line each, which also finds clients that went away). So an open page costs
nothing while nothing happens: no per-page wake-up on the store's every change, no timer per
page. The `retry` line asks the browser to reconnect one second after the daemon went (a restart).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

from aiohttp import web

from orchestrator.state.store import StateStore

KEEPALIVE_S = 15.0
RETRY_MS = 1000


def event(name: str, data: str, seq: int | None = None) -> bytes:
    """One event; every line of `data` gets its own `data:` field (the browser rejoins them)."""
    head = f"id: {seq}\n" if seq is not None else ""
    lines = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"{head}event: {name}\n{lines}\n".encode()


class Pulse:
    """What the open streams of one kind wait on: `moves` counts the changes of `key()` (what
    they show, cheaply compared), `beats` the keep-alive beats. Its task runs only while a
    stream is open."""

    def __init__(
        self, store: StateStore, key: Callable[[], object], keepalive_s: float = KEEPALIVE_S
    ) -> None:
        self._store = store
        self.key = key
        self._keepalive_s = keepalive_s
        self._open = 0
        self._task: asyncio.Task[None] | None = None
        self.wake = asyncio.Event()  # replaced once set: a waiter holds the one it waits on
        self.moves = 0
        self.beats = 0

    @contextlib.contextmanager
    def following(self) -> Iterator[None]:
        self._open += 1
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="sse-pulse")
        try:
            yield
        finally:
            self._open -= 1
            if not self._open and self._task is not None:
                self._task.cancel()
                self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        changed = self._store.watch()
        shown = self.key()
        beat_at = loop.time() + self._keepalive_s
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(beat_at):
                        await changed.wait()
                changed.clear()
                moves, beats = self.moves, self.beats
                if loop.time() >= beat_at:
                    self.beats += 1
                    beat_at = loop.time() + self._keepalive_s
                if (key := self.key()) != shown:
                    shown = key
                    self.moves += 1
                if (moves, beats) != (self.moves, self.beats):
                    wake, self.wake = self.wake, asyncio.Event()
                    wake.set()
        finally:
            self._store.unwatch(changed)


async def follow(
    request: web.Request, pulse: Pulse, produce: Callable[[], bytes | None]
) -> web.StreamResponse:
    """Answer with an event stream: `produce()` at once and whenever `pulse` says what it shows
    moved (None: nothing new for this client), until the client goes or the daemon stops."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # a reverse proxy must not hold the events back
        }
    )
    await response.prepare(request)
    with pulse.following():
        try:
            await response.write(f"retry: {RETRY_MS}\n\n".encode())
            moves: int | None = None
            beats = pulse.beats
            while True:
                wake = pulse.wake
                if pulse.moves != moves:
                    moves = pulse.moves
                    chunk = produce()
                    if chunk:
                        await response.write(chunk)
                if pulse.beats != beats:
                    beats = pulse.beats
                    await response.write(b": keep-alive\n\n")
                await wake.wait()
        except (ConnectionResetError, ConnectionError):
            pass  # the client went away
    return response
