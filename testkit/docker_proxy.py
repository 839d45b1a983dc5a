"""A fault-injecting proxy in front of the Docker socket, for the fault suite.

The daemon is pointed at it (`DOCKER_HOST=unix://<socket>`) and sees a real Docker engine that
misbehaves on cue: requests chosen by method and path can be held without an answer until the
test releases them (a stuck containerd shim, a hung dockerd), or answered with a 500 (a Docker
that refuses). Everything else goes through byte for byte, the streaming `/events` answer and
hijacked connections included: each client connection carries one request, sent upstream with
`Connection: close`, and both directions are then piped until they close. `freeze()` holds
every new request and stops the bytes of the streams already open: the whole API hanging.

It runs an asyncio loop in a thread of the test process; the test thread talks to it through
`Rule` objects and the proxy's methods, which are thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

DOCKER_SOCKET = "/var/run/docker.sock"
MAX_HEAD = 64 * 1024
PIPE_CHUNK = 64 * 1024
POLL_S = 0.05

Fault = Literal["stall", "fail"]


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str  # without the query string
    head: bytes  # the request line and headers, rewritten for upstream
    body: bytes  # a body of a known length, read before the request is judged


@dataclass(eq=False)
class Rule:
    """Requests of `method` whose path matches `path` (and names `container`, when given) get
    `fault`, at most `times` times (None: every time, until removed)."""

    fault: Fault
    method: str
    path: str
    container: str | None = None
    times: int | None = None
    message: str = "injected fault"
    hits: int = 0
    held: int = 0  # requests it holds right now (stall)
    _released: threading.Event = field(default_factory=threading.Event)

    def matches(self, request: Request) -> bool:
        if request.method != self.method or not re.search(self.path, request.path):
            return False
        if self.container is not None and self.container not in request.path.split("/"):
            return False
        return self.times is None or self.hits < self.times

    @property
    def released(self) -> bool:
        return self._released.is_set()


class DockerProxy:
    def __init__(self, socket_path: Path, upstream: str = DOCKER_SOCKET) -> None:
        self.socket_path = socket_path
        self.upstream = upstream
        self._rules: list[Rule] = []
        self._lock = threading.Lock()
        self._thawed = threading.Event()
        self._thawed.set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="docker-proxy", daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._closing = False
        self._open: set[asyncio.StreamWriter] = set()  # both ends of every connection
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def env(self) -> dict[str, str]:
        """The environment that points a daemon (or the docker CLI) at the proxy."""
        return {"DOCKER_HOST": self.docker_host}

    # -- the test's side -----------------------------------------------------------------------
    def start(self) -> DockerProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_unix_server(self._serve, path=str(self.socket_path)), self._loop
        ).result(timeout=10)
        return self

    def stop(self) -> None:
        """Stop listening and end every connection: nothing held goes on to Docker."""
        self._closing = True
        self.clear()
        self.thaw()
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._open):
            writer.transport.abort()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)

    def stall(
        self, method: str, path: str, *, container: str | None = None, times: int | None = None
    ) -> Rule:
        """Hold matching requests unanswered until `remove(rule)`."""
        return self._add(Rule("stall", method, path, container=container, times=times))

    def fail(
        self,
        method: str,
        path: str,
        *,
        container: str | None = None,
        times: int | None = None,
        message: str = "injected fault",
    ) -> Rule:
        """Answer matching requests with a 500 `{"message": message}`."""
        return self._add(Rule("fail", method, path, container=container, times=times, message=message))

    def _add(self, rule: Rule) -> Rule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove(self, rule: Rule) -> None:
        """No more requests match `rule`; those it holds go on to Docker."""
        with self._lock:
            if rule in self._rules:
                self._rules.remove(rule)
        rule._released.set()

    def clear(self) -> None:
        with self._lock:
            rules = list(self._rules)
        for rule in rules:
            self.remove(rule)

    def freeze(self) -> None:
        """The whole API hangs: new requests are held, open streams stop moving."""
        self._thawed.clear()

    def thaw(self) -> None:
        self._thawed.set()

    # -- the proxy's side ----------------------------------------------------------------------
    def _match(self, request: Request) -> Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.matches(request):
                    rule.hits += 1
                    return rule
        return None

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._open.add(client_w)
        try:
            request = await _read_request(client_r)
            if request is None:
                return
            rule = self._match(request)
            if not self._thawed.is_set() or (rule is not None and rule.fault == "stall"):
                if not await self._hold(rule, client_r):
                    return  # the client gave up while it was held
            elif rule is not None:
                await _answer_500(client_w, rule.message)
                return
            await self._forward(request, client_r, client_w)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._open.discard(client_w)
            self._tasks.discard(task)
            client_w.close()
            with contextlib.suppress(ConnectionError):
                await client_w.wait_closed()

    async def _hold(self, rule: Rule | None, client_r: asyncio.StreamReader) -> bool:
        """Until the rule is released and the API thawed; False when the client hung up first."""
        gone = asyncio.ensure_future(client_r.read(1))  # a client waiting sends nothing more
        if rule is not None:
            rule.held += 1

        def free() -> bool:
            return self._thawed.is_set() and (rule is None or rule.fault != "stall" or rule.released)

        try:
            await _until(lambda: free() or gone.done() or self._closing)
            return not (gone.done() or self._closing)
        finally:
            gone.cancel()
            if rule is not None:
                rule.held -= 1

    async def _forward(
        self, request: Request, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
    ) -> None:
        upstream_r, upstream_w = await asyncio.open_unix_connection(self.upstream)
        self._open.add(upstream_w)
        try:
            upstream_w.write(request.head + request.body)
            await upstream_w.drain()
            await asyncio.gather(self._pipe(client_r, upstream_w), self._pipe(upstream_r, client_w))
        finally:
            self._open.discard(upstream_w)
            upstream_w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(PIPE_CHUNK):
                await _until(lambda: self._thawed.is_set() or self._closing)
                writer.write(chunk)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            writer.close()


async def _until(condition: Callable[[], bool]) -> None:
    """Wait for `condition()`; what it reads is set from the test's thread, so it is polled."""
    while not condition():  # noqa: ASYNC110 (threading flags: no asyncio.Event to await)
        await asyncio.sleep(POLL_S)


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    """The request head, rewritten so that Docker closes the connection after its answer."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError:
        head = await reader.read(MAX_HEAD)
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ", 2)
    headers = [line for line in lines[1:] if line]
    names = {line.partition(":")[0].strip().lower(): line.partition(":")[2].strip() for line in headers}
    if "upgrade" not in names:  # a hijacked stream (attach, exec) keeps its own Connection header
        headers = [h for h in headers if h.partition(":")[0].strip().lower() != "connection"]
        headers.append("Connection: close")
    rewritten = "\r\n".join([f"{method} {target} {version}", *headers, "", ""]).encode("latin-1")
    length = int(names.get("content-length", "0") or 0)
    body = await reader.readexactly(length) if length else b""
    return Request(method=method, path=target.partition("?")[0], head=rewritten, body=body)


async def _answer_500(writer: asyncio.StreamWriter, message: str) -> None:
    body = json.dumps({"message": message}).encode()
    writer.write(
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    await writer.drain()


@contextlib.contextmanager
def running_proxy() -> Iterator[DockerProxy]:
    """A proxy on a socket of its own (a short path: a Unix socket's is at most 107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="docker-proxy-") as socket_dir:
        proxy = DockerProxy(Path(socket_dir) / "docker.sock").start()
        try:
            yield proxy
        finally:
            proxy.stop()
