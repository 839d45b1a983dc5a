"""A proxy client that makes exactly acexy's calls, in acexy's order (../shared/proxy-contract.md).

No acexy build is provided with the project, so the tests and the soak that used the real one
use this instead (an `ACEXY_BIN` pointing at a real build takes precedence where a test supports
it). What it does, per the contract:

- `GET /orchestrator/status` (no auth) at start, then every `status_every_s` (30 s);
- per stream: `GET /engines` (cached `engines_cache_s`, 2 s), one `GET
  /streams?container_id=ID&status=started` per engine; engines with fewer started streams than
  `max_streams_per_engine` are kept, healthy first, then fewest streams, then forwarded, then
  longest unused;
- none free: `GET /orchestrator/status`, then `POST /provision/acestream` up to 3 times, retried
  only when the answer says `should_wait` (the 2nd after half of `recovery_eta_seconds`, the 3rd
  after the whole of it); after a 200: sleep `settle_s` (5 s), look for the engine in `/engines`
  (up to `lookup_s` more) and dial `localhost:<host_http_port>`;
- the engine's `/ace/getstream?format=json&id=...&pid=<uuid>`, then `POST /events/stream_started`
  (awaited), the playback URL read, and at the end `POST /events/stream_ended` and the engine's
  `command_url?method=stop`.

Every orchestrator call has a 3-second timeout and carries `Authorization: Bearer <key>` (but
the status one) when a key is given. Sleeps are parameters so tests can shorten them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp

ORCH_TIMEOUT = aiohttp.ClientTimeout(total=3.0)
ENGINE_TIMEOUT = aiohttp.ClientTimeout(total=20.0)  # acexy's ACEXY_NO_RESPONSE_TIMEOUT


@dataclass(frozen=True, slots=True, kw_only=True)
class Timing:
    status_every_s: float = 30.0
    engines_cache_s: float = 2.0
    settle_s: float = 5.0
    lookup_s: float = 5.0
    eta_scale: float = 1.0  # multiplies the waits taken from `recovery_eta_seconds`


@dataclass(frozen=True, slots=True, kw_only=True)
class Engine:
    container_id: str
    host: str
    port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Playback:
    engine: Engine
    key: str
    playback_session_id: str
    playback_url: str
    stat_url: str
    command_url: str
    stream_id: str
    first_bytes: bytes = b""


class ProvisionFailed(Exception):
    """All provisioning attempts failed: acexy answers the viewer 503."""

    def __init__(self, detail: Any) -> None:
        super().__init__(f"provisioning failed: {detail!r}")
        self.detail = detail


@dataclass(slots=True, kw_only=True)
class ProxyClient:
    session: aiohttp.ClientSession
    orch_url: str
    api_key: str | None = None
    max_streams_per_engine: int = 1
    timing: Timing = field(default_factory=Timing)
    engine_host: str = "localhost"  # where a provisioned engine is dialled
    container_id: str | None = None  # acexy's ACEXY_CONTAINER_ID, sent in stream events
    engine_timeout: aiohttp.ClientTimeout = ENGINE_TIMEOUT  # acexy's ACEXY_NO_RESPONSE_TIMEOUT
    calls: list[str] = field(default_factory=list)  # "METHOD /path?query", in order
    last_status: Any = None
    _engines: tuple[float, list[dict[str, Any]]] | None = None
    _poller: asyncio.Task[None] | None = None
    _background: set[asyncio.Task[Any]] = field(default_factory=set)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    async def _orch(self, method: str, path: str, *, body: Any = None, auth: bool = True) -> tuple[int, Any]:
        self.calls.append(f"{method} {path}")
        async with self.session.request(
            method,
            self.orch_url + path,
            json=body,
            headers=self._headers() if auth else {},
            timeout=ORCH_TIMEOUT,
        ) as resp:
            try:
                data = await resp.json(content_type=None)
            except ValueError:
                data = None
            return resp.status, data

    # ---- status poll ------------------------------------------------------------------
    async def status(self) -> Any:
        _, self.last_status = await self._orch("GET", "/orchestrator/status", auth=False)
        return self.last_status

    async def start(self) -> None:
        """The status poll: at once, then every `status_every_s`."""
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            await self.status()
        self._poller = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.timing.status_every_s)
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                await self.status()

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # ---- selection ----------------------------------------------------------------------
    async def engines(self, *, fresh: bool = False) -> list[dict[str, Any]]:
        now = time.monotonic()
        if not fresh and self._engines is not None and now - self._engines[0] < self.timing.engines_cache_s:
            return self._engines[1]
        status, body = await self._orch("GET", "/engines")
        listed = body if status == 200 and isinstance(body, list) else []
        self._engines = (now, listed)
        return listed

    async def free_engine(self) -> Engine | None:
        """The engine acexy would pick, or None when none has a free slot."""
        candidates = []
        for e in await self.engines():
            _, streams = await self._orch("GET", f"/streams?container_id={e['container_id']}&status=started")
            started = [s for s in streams or [] if s.get("status") == "started"]
            if len(started) < self.max_streams_per_engine:
                candidates.append((e, len(started)))
        if not candidates:
            return None
        candidates.sort(
            key=lambda c: (
                c[0].get("health_status") != "healthy",
                c[1],
                not c[0].get("forwarded"),
                c[0].get("last_stream_usage") or "",
            )
        )
        best = candidates[0][0]
        return Engine(container_id=best["container_id"], host=best["host"], port=int(best["port"]))

    async def provision(self) -> Engine:
        """`GET /orchestrator/status`, then up to 3 provisioning attempts; a provisioned engine is
        dialled at `engine_host:<host_http_port>`."""
        await self.status()
        detail: Any = None
        for attempt in (1, 2, 3):
            status, body = await self._orch("POST", "/provision/acestream", body={"labels": {}, "env": {}})
            if status == 200 and isinstance(body, dict):
                await asyncio.sleep(self.timing.settle_s)
                deadline = time.monotonic() + self.timing.lookup_s
                while not any(
                    e.get("container_id") == body["container_id"] for e in await self.engines(fresh=True)
                ):
                    if time.monotonic() >= deadline:
                        break
                    await asyncio.sleep(min(0.5, self.timing.lookup_s))
                return Engine(
                    container_id=body["container_id"], host=self.engine_host, port=int(body["host_http_port"])
                )
            detail = body.get("detail") if isinstance(body, dict) else body
            if not (isinstance(detail, dict) and detail.get("should_wait")) or attempt == 3:
                break
            eta = float(detail.get("recovery_eta_seconds") or 0)
            await asyncio.sleep((eta / 2 if attempt == 1 else eta) * self.timing.eta_scale)
        raise ProvisionFailed(detail)

    async def engine_for_stream(self) -> Engine:
        return await self.free_engine() or await self.provision()

    # ---- a viewer ------------------------------------------------------------------------
    async def getstream(self, key: str) -> Playback:
        """An engine for the stream, its `getstream` answer, then `stream_started` (awaited, as
        acexy does before it plays anything). The playback URL is not read here."""
        engine = await self.engine_for_stream()
        pid = str(uuid.uuid4())
        url = f"http://{engine.host}:{engine.port}/ace/getstream?format=json&id={key}&pid={pid}"
        async with self.session.get(url, timeout=self.engine_timeout) as resp:
            answer = await resp.json(content_type=None)
        answer = answer if isinstance(answer, dict) else {}
        r = answer.get("response") or {}
        if resp.status != 200 or answer.get("error") or not r.get("playback_url"):
            # no stream to play: nothing is reported to the daemon (the viewer gets a 500)
            raise ValueError(f"getstream: HTTP {resp.status}, error {answer.get('error')!r}")
        session_id = str(r.get("playback_session_id", ""))
        stream_id = f"{key}|{session_id}"
        started = {
            "engine": {"host": engine.host, "port": engine.port},
            "stream": {"key_type": "content_id", "key": key},
            "session": {
                "playback_session_id": session_id,
                "stat_url": r.get("stat_url", ""),
                "command_url": r.get("command_url", ""),
                "is_live": int(r.get("is_live", 1)),
            },
            "labels": {"stream_id": stream_id},
        }
        if self.container_id:
            started["container_id"] = self.container_id
        await self._orch("POST", "/events/stream_started", body=started)
        return Playback(
            engine=engine,
            key=key,
            playback_session_id=session_id,
            playback_url=r.get("playback_url", ""),
            stat_url=r.get("stat_url", ""),
            command_url=r.get("command_url", ""),
            stream_id=stream_id,
        )

    async def play(self, key: str, *, read: int = 1024) -> Playback:
        """`getstream`, then the first `read` bytes of the playback URL (fewer only at its end)."""
        playback = await self.getstream(key)
        first = b""
        if playback.playback_url:
            async with self.session.get(playback.playback_url, timeout=self.engine_timeout) as resp:
                while len(first) < read:
                    chunk = await resp.content.read(read - len(first))
                    if not chunk:
                        break
                    first += chunk
        return dataclasses.replace(playback, first_bytes=first)

    async def end(self, playback: Playback, reason: str = "client_disconnected") -> None:
        """`stream_ended` in the background (as acexy), then the engine's stop command."""
        task = asyncio.create_task(
            self._orch("POST", "/events/stream_ended", body=self._ended(playback, reason))
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        if playback.command_url:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with self.session.get(
                    f"{playback.command_url}?method=stop", timeout=self.engine_timeout
                ) as resp:
                    await resp.read()

    def _ended(self, playback: Playback, reason: str) -> dict[str, str]:
        body = {"stream_id": playback.stream_id, "reason": reason}
        if self.container_id:
            body["container_id"] = self.container_id
        return body
