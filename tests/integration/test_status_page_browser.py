"""The status page in a real browser (Debian's chromium, driven over the DevTools protocol by
cdp.py) against the daemon and the stand-ins on the real Docker engine: it loads without a
console error, lists what the API lists, shows a VPN turning unhealthy (its engines hidden,
with the reason) within a second of Docker's event and without a reload, reconnects after the
daemon restarts under it, and refuses a caller off loopback without the key. The screenshot is
kept as a test artefact (build/test-artifacts/, or $TEST_ARTIFACTS) and must not be blank.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.addresses import lan_address
from testkit.cdp import Tab, browser, chromium_path, pixel_stdev
from testkit.harness import (
    REPO,
    Daemon,
    docker,
    run_gluetun,
    set_vpn_health,
    wait_vpn_health,
)

MakeDaemon = Callable[..., Daemon]
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS") or REPO / "build" / "test-artifacts")
KEY = "browser-test-key"
# Log entries chromium writes while the daemon is down and the page's stream reconnects
RECONNECTING = ("ERR_CONNECTION_REFUSED", "ERR_EMPTY_RESPONSE", "ERR_CONNECTION_RESET", "/events")

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="no chromium: `make browser` installs it")


@pytest.fixture
def vpn_name() -> Iterator[str]:
    name = f"gluetun-page-{uuid.uuid4().hex[:6]}"
    yield name
    docker("rm", "-f", name, check=False)


def texts(selector: str) -> str:
    return f"Array.from(document.querySelectorAll({selector!r})).map(n => n.textContent.trim())"


def docker_health_event_at(container: str, since: float) -> float:
    """When Docker emitted the container's `health_status: unhealthy` (seconds, its own clock)."""
    out = subprocess.run(
        [
            "docker",
            "events",
            "--since",
            f"{since:.3f}",
            "--until",
            f"{time.time():.3f}",
            "--filter",
            f"container={container}",
            "--filter",
            "event=health_status",
            "--format",
            "{{.Status}} {{.TimeNano}}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split("\n")
    times = [int(line.rsplit(" ", 1)[1]) for line in out if "unhealthy" in line]
    assert times, f"no health_status: unhealthy event of {container}: {out}"
    return times[0] / 1e9


def keep_artefact(name: str, data: bytes) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / name).write_bytes(data)


async def page_lists(tab: Tab) -> dict[str, Any]:
    return dict(
        await tab.evaluate(
            "({engines: "
            + texts("#engines tbody td:first-child b")
            + ", vpns: "
            + texts("#vpns tbody td:first-child b")
            + ", served: document.getElementById('served-count').textContent"
            + ", conn: document.getElementById('conn').textContent})"
        )
    )


async def test_the_page_follows_the_pool_live_in_a_real_browser(
    make_daemon: MakeDaemon, vpn_name: str
) -> None:
    run_gluetun(vpn_name, forwarded_port=40001)
    wait_vpn_health(vpn_name, "healthy")
    daemon = make_daemon(
        engines={"min_replicas": 2},
        vpn={"mode": "single", "containers": [vpn_name], "health_check_interval_s": 0.5},
    )
    listed = await asyncio.to_thread(daemon.wait_engines, 2, 90)
    async with browser() as chrome:
        tab = await chrome.new_tab()
        await tab.goto(daemon.url + "/")
        await tab.wait_for("document.getElementById('conn').textContent === 'live'")
        shown = await page_lists(tab)
        vpns = [v["name"] for v in daemon.get("/vpn/status")[1]["vpns"]]
        assert sorted(shown["engines"]) == sorted(e["container_name"] for e in listed)
        assert shown["vpns"] == vpns and shown["served"] == str(len(daemon.engines()))
        png = await tab.screenshot()
        await asyncio.to_thread(keep_artefact, "status-page.png", png)
        assert pixel_stdev(png) > 10, "the screenshot is blank"
        assert tab.errors == [], tab.errors

        # the VPN turns unhealthy: the page shows it, no reload (the marker survives)
        await tab.evaluate(
            "window.marker = 1; window.hiddenAt = null; new MutationObserver(() => {"
            " const n = document.getElementById('served-count');"
            " if (n && n.textContent === '0' && !window.hiddenAt) window.hiddenAt = Date.now(); })"
            ".observe(document.getElementById('live'), {childList: true, subtree: true})"
        )
        since = time.time() - 1
        await asyncio.to_thread(set_vpn_health, vpn_name, False)
        dom_ms = await tab.wait_for("window.hiddenAt", timeout_s=15)
        event_at = await asyncio.to_thread(docker_health_event_at, vpn_name, since)
        lag = dom_ms / 1000 - event_at
        state = await tab.evaluate("document.getElementById('engines').textContent")
        verdict = await tab.evaluate("document.getElementById('verdict').textContent")
        print(f"Docker's health_status event -> the page's DOM: {lag * 1000:.0f} ms")
        assert lag < 1.0, f"the page showed the hidden engines {lag:.3f}s after Docker's event"
        assert await tab.evaluate("window.marker") == 1, "the page was reloaded"
        assert "hidden" in state and f"VPN {vpn_name} unhealthy" in state
        assert not verdict.startswith("ok")
        history = await tab.evaluate("document.getElementById('history').textContent")
        assert "Docker `health_status: unhealthy`" in history
        assert tab.errors == [], tab.errors

        # the daemon restarts under the open page: it reconnects by itself
        await asyncio.to_thread(set_vpn_health, vpn_name, True)
        await asyncio.to_thread(daemon.stop)
        await tab.wait_for("document.getElementById('conn').textContent !== 'live'")
        before = await tab.evaluate("window.pageUpdatedAt")
        await asyncio.to_thread(daemon.start)
        await tab.wait_for(f"window.pageUpdatedAt > {before}", timeout_s=30)
        await asyncio.to_thread(daemon.wait_engines, 2, 90)
        await tab.wait_for("document.getElementById('served-count').textContent === '2'", timeout_s=30)
        assert await tab.evaluate("window.marker") == 1, "the page was reloaded"
        unexpected = [e for e in tab.errors if not any(r in e for r in RECONNECTING)]
        assert unexpected == [], unexpected


async def test_off_loopback_the_page_refuses_without_the_key(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(engines={"min_replicas": 1}, api={"host": "0.0.0.0", "api_key": KEY})
    await asyncio.to_thread(daemon.wait_engines, 1, 90)
    url = f"http://{lan_address()}:{daemon.port}/"
    async with browser() as chrome:
        tab = await chrome.new_tab()
        await tab.goto(url)
        assert await tab.evaluate("!!document.querySelector('input[name=key]')")
        assert await tab.evaluate("document.getElementById('engines')") is None
        assert await tab.evaluate("fetch('events').then(r => r.status)") == 401
        assert KEY not in await tab.evaluate("document.documentElement.outerHTML")

        loaded = tab.expect("Page.loadEventFired")
        await tab.evaluate(
            f"document.querySelector('input[name=key]').value = {KEY!r};"
            " document.querySelector('form').submit()"
        )
        await loaded
        await tab.wait_for(
            "document.getElementById('conn') && document.getElementById('conn').textContent === 'live'"
        )
        engines = await tab.evaluate(texts("#engines tbody td:first-child b"))
        assert engines == [e["container_name"] for e in daemon.engines()]
        assert KEY not in await tab.evaluate("document.documentElement.outerHTML + document.cookie")
        assert KEY not in await tab.evaluate("location.href")
