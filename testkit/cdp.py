"""Drive Debian's `chromium` over the Chrome DevTools Protocol: the status page's browser tests
(test_status_page_browser.py) and its bench figure (bench/status_page.py).

No browser driver and no Playwright (neither can fetch a browser here, and Debian ships no
matching driver): a headless chromium with `--remote-debugging-port`, and the protocol's JSON
messages over a websocket (aiohttp, already a dependency). Just what the tests need: open a
tab, navigate, evaluate an expression, collect console errors and uncaught exceptions, take a
screenshot; plus a small PNG reader to check a screenshot is not blank.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import shutil
import statistics
import struct
import subprocess
import tempfile
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = ("chromium", "chromium-browser")


def chromium_path() -> str | None:
    return next((p for p in map(shutil.which, CHROMIUM) if p), None)


class Tab:
    """One page target, over its own websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}
        self.errors: list[str] = []  # console errors, uncaught exceptions, failed loads
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = msg.json()
            if "id" in data:
                future = self._waiting.pop(data["id"], None)
                if future is not None and not future.done():
                    if "error" in data:
                        future.set_exception(RuntimeError(f"CDP error: {data['error']}"))
                    else:
                        future.set_result(data.get("result", {}))
                continue
            method, params = data.get("method", ""), data.get("params", {})
            self._note(method, params)
            for future in self._events.pop(method, []):
                if not future.done():
                    future.set_result(params)

    def _note(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.exceptionThrown":
            self.errors.append(f"exception: {params['exceptionDetails'].get('text')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append(f"console.error: {[a.get('value') for a in params.get('args', [])]}")
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            self.errors.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[ident] = future
        await self._ws.send_json({"id": ident, "method": method, "params": params})
        async with asyncio.timeout(30):
            return await future

    def expect(self, method: str) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._events.setdefault(method, []).append(future)
        return future

    async def goto(self, url: str) -> None:
        loaded = self.expect("Page.loadEventFired")
        await self.send("Page.navigate", url=url)
        async with asyncio.timeout(30):
            await loaded

    async def evaluate(self, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"evaluate failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout_s: float = 10.0) -> Any:
        """Until `expression` is truthy in the page (the test asks every 50 ms; the page polls
        nothing)."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"not true in the page after {timeout_s}s: {expression}")
            await asyncio.sleep(0.05)

    async def screenshot(self) -> bytes:
        """The whole page as a PNG."""
        shot = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        return base64.b64decode(shot["data"])

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._ws.close()


class Browser:
    """A headless chromium of its own (its own profile directory), ended with `close()`."""

    def __init__(self, process: asyncio.subprocess.Process, port: int, profile: Path) -> None:
        self.process, self.port, self.profile = process, port, profile
        self.session = aiohttp.ClientSession()
        self._browser: Tab | None = None  # the browser-wide target, for contexts

    @classmethod
    async def launch(cls, width: int = 1280, height: int = 900) -> Browser:
        path = chromium_path()
        if path is None:
            raise RuntimeError("no chromium on PATH: `make browser` installs Debian's")
        profile = Path(tempfile.mkdtemp(prefix="cdp-profile-"))
        process = await asyncio.create_subprocess_exec(
            path,
            "--headless=new",
            "--no-sandbox",  # root in a container: the sandbox needs user namespaces
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--metrics-recording-only",
            "--hide-scrollbars",
            f"--window-size={width},{height}",
            f"--user-data-dir={profile}",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "about:blank",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (active.exists() and active.read_text().strip()):
            if process.returncode is not None or time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                raise RuntimeError(f"chromium did not open its DevTools port (exit {process.returncode})")
            await asyncio.sleep(0.1)
        return cls(process, int(active.read_text().split()[0]), profile)

    async def new_tab(self, *, isolated: bool = False) -> Tab:
        """A new tab; `isolated`: in a browser context of its own (its own cookies and its own
        connection pool: a browser keeps at most 6 HTTP/1.1 connections to one host, and each
        open page holds one for its event stream)."""
        if isolated:
            browser_tab = await self._browser_target()
            context = await browser_tab.send("Target.createBrowserContext")
            made = await browser_tab.send(
                "Target.createTarget", url="about:blank", browserContextId=context["browserContextId"]
            )
            url = f"ws://127.0.0.1:{self.port}/devtools/page/{made['targetId']}"
        else:
            async with self.session.put(f"http://127.0.0.1:{self.port}/json/new?about:blank") as resp:
                url = (await resp.json())["webSocketDebuggerUrl"]
        ws = await self.session.ws_connect(url, max_msg_size=64 * 1024 * 1024)
        tab = Tab(ws)
        for domain in ("Page", "Runtime", "Log"):
            await tab.send(f"{domain}.enable")
        return tab

    async def _browser_target(self) -> Tab:
        if self._browser is None:
            async with self.session.get(f"http://127.0.0.1:{self.port}/json/version") as resp:
                url = (await resp.json())["webSocketDebuggerUrl"]
            self._browser = Tab(await self.session.ws_connect(url))
        return self._browser

    async def close(self) -> None:
        if self._browser is not None:
            await self._browser.close()
        await self.session.close()
        with contextlib.suppress(ProcessLookupError):
            self.process.terminate()
        try:
            async with asyncio.timeout(10):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


@contextlib.asynccontextmanager
async def browser(width: int = 1280, height: int = 900) -> AsyncIterator[Browser]:
    opened = await Browser.launch(width, height)
    try:
        yield opened
    finally:
        await opened.close()


# -- a PNG's pixels, to tell a blank screenshot from a page -----------------------------------
def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def png_gray_levels(png: bytes) -> list[int]:
    """Each pixel's gray level (8-bit RGB or RGBA PNGs, as chromium writes them)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6), f"unexpected PNG format {depth}/{color}"
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride = zlib.decompress(idat), width * channels
    previous, gray = bytearray(stride), list[int]()
    for y in range(height):
        start = y * (stride + 1)
        row_filter, row = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for x in range(stride):
            left = row[x - channels] if x >= channels else 0
            up, corner = previous[x], previous[x - channels] if x >= channels else 0
            add = (0, left, up, (left + up) // 2, _paeth(left, up, corner))[row_filter]
            row[x] = (row[x] + add) & 0xFF
        gray.extend((row[x] + row[x + 1] + row[x + 2]) // 3 for x in range(0, stride, channels))
        previous = row
    return gray


def pixel_stdev(png: bytes) -> float:
    """How much the screenshot's gray levels vary: near 0 for a blank (one-colour) image."""
    return statistics.pstdev(png_gray_levels(png))
