"""The liveness round's checks (orchestrator/workers/version_round.py) against real sockets on
loopback: each kind of engine answer, and the ways an engine fails to give one, in one round."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from orchestrator.workers.version_round import answered_version, is_ip_address, versions_answered

VERSION = json.dumps({"result": {"version": "3.2.3", "code": 3020300}, "error": None}).encode()
Reply = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def http(status: str, body: bytes, *headers: str) -> bytes:
    head = "\r\n".join([f"HTTP/1.1 {status}", *headers])
    return head.encode() + b"\r\n\r\n" + body


async def _request(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


def answer_then_close(raw: bytes) -> Reply:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        writer.write(raw)
        await writer.drain()
        writer.close()

    return reply


def answer_and_keep_open(raw: bytes) -> Reply:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        writer.write(raw)
        await writer.drain()
        await asyncio.sleep(30)  # never closes: the answer's own length must end it

    return reply


def trickle(raw: bytes) -> Reply:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        for i in range(0, len(raw), 7):
            writer.write(raw[i : i + 7])
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.close()

    return reply


async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(30)


@asynccontextmanager
async def engine(reply: Reply, host: str = "127.0.0.1") -> AsyncIterator[tuple[str, int]]:
    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await reply(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield host, port
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


OK = http("200 OK", VERSION, f"Content-Length: {len(VERSION)}", "Content-Type: application/json")
CHUNKED = http("200 OK", b"%x\r\n%s\r\n0\r\n\r\n" % (len(VERSION), VERSION), "Transfer-Encoding: chunked")


@pytest.mark.parametrize(
    ("reply", "answered"),
    [
        (answer_then_close(OK), True),
        (answer_then_close(http("200 OK", VERSION)), True),  # no length: ends when it closes
        (answer_and_keep_open(OK), True),
        (answer_and_keep_open(CHUNKED), True),
        (trickle(OK), True),
        (answer_then_close(http("500 Internal Server Error", VERSION)), False),
        (answer_then_close(http("200 OK", b'{"result": null, "error": "starting"}')), False),
        (answer_then_close(http("200 OK", b"<html>not yet</html>")), False),
        (answer_then_close(http("200 OK", b"[1, 2]")), False),
        (answer_then_close(b"garbage\r\n\r\n"), False),
        (answer_then_close(http("200 OK", b'{"result": "' + b"x" * 70_000 + b'"}')), False),
        (answer_and_keep_open(http("200 OK", VERSION)), False),  # no length, never ends
        (never_answer, False),
    ],
    ids=[
        "answers",
        "answers_without_length",
        "answers_keeps_connection",
        "answers_chunked_keeps_connection",
        "answers_in_pieces",
        "server_error",
        "result_null",
        "not_json",
        "json_not_an_object",
        "not_http",
        "oversized",
        "unterminated",
        "hung",
    ],
)
async def test_one_engine(reply: Reply, answered: bool) -> None:
    async with engine(reply) as where:
        assert await versions_answered([where], timeout_s=1.0) == [answered]


async def test_a_round_keeps_each_engine_to_its_own_verdict() -> None:
    async with (
        engine(answer_then_close(OK)) as good,
        engine(never_answer) as hung,
        engine(answer_and_keep_open(OK)) as kept,
    ):
        refused = ("127.0.0.1", closed_port())
        endpoints = [good, refused, hung, kept, good]
        assert await versions_answered(endpoints, timeout_s=1.0) == [True, False, False, True, True]


async def test_an_empty_round_answers_at_once() -> None:
    assert await versions_answered([], timeout_s=5.0) == []


async def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        async with engine(answer_then_close(OK), host="::1") as where:
            assert await versions_answered([where], timeout_s=1.0) == [True]
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")


@pytest.mark.parametrize(
    ("host", "ip"),
    [
        ("172.18.0.5", True),
        ("::1", True),
        ("fe80::1%eth0", False),
        ("acestream-engine-0", False),
        ("", False),
    ],
)
def test_only_ip_addresses_are_dialled_directly(host: str, ip: bool) -> None:
    assert is_ip_address(host) is ip


def test_the_verdict_is_the_readiness_probes() -> None:
    assert answered_version(OK)
    assert not answered_version(OK.replace(b"200 OK", b"404 Not Found"))
    assert answered_version(CHUNKED)
