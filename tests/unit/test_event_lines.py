"""The Docker event stream split into lines: an enormous line is skipped where it ends, never
fatal, whatever the chunking."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from orchestrator.docker.gateway import event_lines


async def chunked(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def lines(data: bytes, size: int, limit: int) -> list[bytes | None]:
    return [line async for line in event_lines(chunked(data, size), limit)]


@pytest.mark.parametrize("size", [1, 3, 7, 64, 4096])
async def test_lines_whatever_the_chunks(size: int) -> None:
    data = b'{"a":1}\n\n{"b":2}\n{"c":3}'
    assert await lines(data, size, limit=100) == [b'{"a":1}', b'{"b":2}', b'{"c":3}']


@pytest.mark.parametrize("size", [1, 5, 33, 4096])
async def test_an_oversized_line_is_skipped_once_and_the_next_ones_come_through(size: int) -> None:
    huge = json.dumps({"Actor": {"Attributes": {"label": "x" * 300}}}).encode()
    data = b'{"a":1}\n' + huge + b'\n{"b":2}\n'
    assert await lines(data, size, limit=100) == [b'{"a":1}', None, b'{"b":2}']


async def test_a_line_of_exactly_the_limit_is_kept() -> None:
    assert await lines(b"x" * 10 + b"\n", 4, limit=10) == [b"x" * 10]
    assert await lines(b"x" * 11 + b"\n", 4, limit=10) == [None]
