"""acexy's viewer side over testkit/proxy_client.py: an HTTP server a viewer asks for
`/ace/getstream?id=<content id>`, as it would ask acexy.

No acexy build ships with the project, so the tests and the soak that ran the real binary (the
compose stacks' test, bench/soak.py) put this in its place: same address shape, same viewer
URL, and behind it the client's calls in acexy's order (engine selection or provisioning,
the engine's getstream, `stream_started`, the playback stream relayed to the viewer until either
side ends or `empty_timeout_s` passes without data, then `stream_ended` and the engine's stop
command). A provisioning failure is a 503 to the viewer, as acexy answers.

It runs on its own event loop in a thread (`running_front`), so the thread-based viewers of those
tests talk to it exactly as to a process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from testkit.proxy_client import ProvisionFailed, ProxyClient, Timing

ENGINE_HEADER = "X-Engine-Container-Id"  # the container ID of the engine relayed to the viewer


@dataclass(frozen=True, slots=True, kw_only=True)
class FrontSettings:
    """What acexy's environment would set (../shared/proxy-contract.md)."""

    orch_url: str  # ACEXY_ORCH_URL
    api_key: str | None = None  # ACEXY_ORCH_APIKEY
    max_streams_per_engine: int = 1  # ACEXY_MAX_STREAMS_PER_ENGINE
    no_response_timeout_s: float = 20.0  # ACEXY_NO_RESPONSE_TIMEOUT
    empty_timeout_s: float = 10.0  # ACEXY_EMPTY_TIMEOUT
    timing: Timing = field(default_factory=Timing)


@dataclass(slots=True)
class Front:
    """The server's state: the client (its `calls` in order) and a tally per outcome."""

    client: ProxyClient
    settings: FrontSettings
    outcomes: dict[str, int] = field(default_factory=dict)

    def _count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    async def getstream(self, request: web.Request) -> web.StreamResponse:
        key = request.query.get("id") or request.query.get("content_id") or request.query.get("infohash")
        if not key:
            return web.Response(status=400, text="missing id")
        try:
            playback = await self.client.getstream(key)
        except ProvisionFailed as exc:
            self._count("provision_failed")
            return web.Response(status=503, text=str(exc))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self._count("engine_failed")
            return web.Response(status=500, text=f"{type(exc).__name__}: {exc}")
        reason = "client_disconnected"
        relay = aiohttp.ClientTimeout(
            total=None,
            sock_connect=self.settings.no_response_timeout_s,
            sock_read=self.settings.empty_timeout_s,
        )
        # which engine serves it: not an acexy header, for the soak's accounting of cut viewers
        response = web.StreamResponse(
            headers={"Content-Type": "video/mp2t", ENGINE_HEADER: playback.engine.container_id}
        )
        try:
            async with self.client.session.get(playback.playback_url, timeout=relay) as upstream:
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)  # the viewer gone: ConnectionResetError
                reason = "stream_finished"
            self._count("served")
            return response
        except ConnectionResetError:  # the viewer left (aiohttp's ClientConnectionResetError too)
            self._count("served")
            return response
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._count("engine_failed")
            reason = "engine_error"
            return web.Response(status=502, text=f"{type(exc).__name__}: {exc}")
        finally:
            await asyncio.shield(self.client.end(playback, reason))


async def _serve(front: Front, port: int, ready: threading.Event, stop: asyncio.Event) -> None:
    app = web.Application()
    app.router.add_get("/ace/getstream", front.getstream)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    await front.client.start()
    ready.set()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await front.client.close()
        await front.client.session.close()


@contextlib.contextmanager
def running_front(settings: FrontSettings, port: int) -> Iterator[Front]:
    """The front listening on 127.0.0.1:`port` until the block ends (its own loop, a thread)."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def main() -> None:
        client = ProxyClient(
            session=aiohttp.ClientSession(),
            orch_url=settings.orch_url,
            api_key=settings.api_key,
            max_streams_per_engine=settings.max_streams_per_engine,
            timing=settings.timing,
            engine_timeout=aiohttp.ClientTimeout(total=settings.no_response_timeout_s),
        )
        holder["front"] = front = Front(client=client, settings=settings)
        holder["stop"] = stop = asyncio.Event()
        await _serve(front, port, ready, stop)

    def run() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, which raises it
            holder["error"] = exc
            ready.set()
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="proxy-front", daemon=True)
    thread.start()
    ready.wait(30)
    if "error" in holder or "front" not in holder:
        thread.join(5)
        raise RuntimeError(f"the proxy front did not start: {holder.get('error')!r}")
    try:
        yield holder["front"]
    finally:
        loop.call_soon_threadsafe(holder["stop"].set)
        thread.join(30)


def real_acexy() -> Path | None:
    """The real acexy binary named by `ACEXY_BIN` (opt-in), or None: use the front. A name that
    is not an executable file is an error, never a silent fall-back."""
    name = os.environ.get("ACEXY_BIN", "")
    if not name:
        return None
    path = Path(name)
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise RuntimeError(f"ACEXY_BIN={name} is not an executable file")
    return path
