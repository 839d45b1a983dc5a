"""The liveness round's checks of every ready engine at once, for a handful of wake-ups.

Asked one by one through the HTTP client session, a round woke the daemon for each connection
made and each answer read: one to three wake-ups per engine, 100-200 at 50 engines, twice a
minute, whatever else the daemon was doing. Here each check of a round is a plain non-blocking
socket: all connect at once, and the round then looks at all of them together, with one `poll`
that does not wait, at a few set moments (`STEPS_S`: one wake-up each) until every engine has
answered or the round's time is up. The question and the verdict are the readiness probe's: `GET
/webui/api/service?method=get_version`, answered 200 with a JSON object whose `result` is set.
It is asked in HTTP/1.0, so the engine closes the connection after its answer (or the answer's
`Content-Length` says where it ends).

Only hosts that are IP addresses are checked here; a host name (`engines.address: name`) needs
a lookup first, which the client session does (`answers_version`).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import json
import select
import socket
from collections.abc import Sequence

READY_PATH = "/webui/api/service?method=get_version"
STEPS_S = (0.02, 0.05, 0.1, 0.2, 0.4)  # then every 0.4 s until the round's time is up
MAX_ANSWER = 64 * 1024  # a version answer is a few hundred bytes
_READ_EVENTS = select.POLLIN | select.POLLHUP | select.POLLERR


def is_ip_address(host: str) -> bool:
    """A host this module can dial without a lookup."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return "%" not in host  # a scoped IPv6 address needs the lookup's scope handling


def is_version(data: object) -> bool:
    """The readiness verdict on a decoded answer: a JSON object whose `result` is set."""
    return isinstance(data, dict) and data.get("result") is not None


def answered_version(raw: bytes) -> bool:
    """A whole HTTP answer: 200 and a JSON object with a `result` (the readiness verdict)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if not sep or len(status) < 2 or not status[0].startswith(b"HTTP/") or status[1] != b"200":
        return False
    if b"chunked" in _header(head, b"transfer-encoding"):
        body = _unchunked(body)
    try:
        return is_version(json.loads(body))
    except ValueError:
        return False


def _header(head: bytes, name: bytes) -> bytes:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip().lower()
    return b""


def _unchunked(body: bytes) -> bytes:
    out = bytearray()
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            return b""
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return bytes(out)


def _complete(raw: bytes) -> bool:
    """The answer is whole before the engine closes: its Content-Length, or the last chunk."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return False
    length = _header(head, b"content-length")
    if length.isdigit():
        return len(body) >= int(length)
    return b"chunked" in _header(head, b"transfer-encoding") and body.endswith(b"0\r\n\r\n")


class _Check:
    """One engine's check: connecting, then asked, then done (`verdict` set)."""

    def __init__(self, host: str, port: int) -> None:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.request = f"GET {READY_PATH} HTTP/1.0\r\nHost: {_host_header(host, port)}\r\n\r\n".encode()
        self.asked = False
        self.answer = bytearray()
        self.verdict: bool | None = None
        if self.sock.connect_ex((host, port)) not in (0, errno.EINPROGRESS):
            self.verdict = False

    def on_ready(self, events: int, poller: select.poll) -> None:
        if not self.asked:
            self._ask(events, poller)
        else:
            self._read()

    def _ask(self, events: int, poller: select.poll) -> None:
        if events & (select.POLLERR | select.POLLHUP) or self.sock.getsockopt(
            socket.SOL_SOCKET, socket.SO_ERROR
        ):
            self.verdict = False  # refused, unreachable
            return
        try:
            sent = self.sock.send(self.request)
        except OSError:
            self.verdict = False
            return
        if sent != len(self.request):  # a fresh connection takes a hundred bytes at once
            self.verdict = False
            return
        self.asked = True
        poller.modify(self.sock.fileno(), _READ_EVENTS)

    def _read(self) -> None:
        while True:
            try:
                chunk = self.sock.recv(MAX_ANSWER)
            except BlockingIOError:
                return
            except OSError:
                self.verdict = False
                return
            if not chunk:
                self.verdict = answered_version(bytes(self.answer))
                return
            self.answer += chunk
            if len(self.answer) > MAX_ANSWER:
                self.verdict = False
                return
            if _complete(bytes(self.answer)):
                self.verdict = answered_version(bytes(self.answer))
                return


def _host_header(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def versions_answered(endpoints: Sequence[tuple[str, int]], timeout_s: float) -> list[bool]:
    """For each `(ip, port)`, whether the engine there answered within `timeout_s`."""
    checks = [_Check(host, port) for host, port in endpoints]
    poller = select.poll()
    waiting: dict[int, _Check] = {}
    for check in checks:
        if check.verdict is None:
            poller.register(check.sock.fileno(), select.POLLOUT)
            waiting[check.sock.fileno()] = check
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    steps = iter(STEPS_S)
    try:
        while waiting:
            left = deadline - loop.time()
            if left <= 0:
                break
            await asyncio.sleep(min(next(steps, STEPS_S[-1]), left))
            for fd, events in poller.poll(0):
                check = waiting[fd]
                check.on_ready(events, poller)
                if check.verdict is not None:
                    poller.unregister(fd)
                    del waiting[fd]
    finally:
        for check in checks:
            check.sock.close()
    return [check.verdict is True for check in checks]
