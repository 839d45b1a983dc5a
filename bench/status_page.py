"""The status page's figures, measured in a real browser (Debian's chromium over the DevTools
protocol, testkit/cdp.py) against the daemon and a Gluetun stand-in:

- change -> DOM: Docker's `health_status` event of the VPN (its own `timeNano`) to the page's
  DOM showing it (a MutationObserver in the page stamps `Date.now()` when the count of engines
  `/engines` serves changes), for N flips unhealthy and back; median and worst;
- the page's total size: what a first visit downloads (one HTML response with the stylesheet and
  the script inlined; nothing else is fetched) and the first live update;
- the daemon's CPU at idle (utime+stime of its process from /proc) and its wake-ups (voluntary
  context switches of its threads) over the same window with no page open and with 20 pages
  open (one browser, 20 tabs, each holding its event stream).

Run: `make bench` (or `.venv/bin/python bench/status_page.py --flips 10 --idle-seconds 60`).
Writes bench/results/status_page.json.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import EventWatch, bench_daemon, cpu_seconds, machine, stop_daemon, summary, write_result
from bench.idle import switches
from testkit.cdp import Tab, browser
from testkit.harness import Daemon, docker, run_gluetun, set_vpn_health, wait_vpn_health

OBSERVE = (
    "window.changes = []; new MutationObserver(() => {"
    " const n = document.getElementById('served-count');"
    " const v = n ? n.textContent : null;"
    " if (v !== window.lastServed) { window.lastServed = v; window.changes.push([v, Date.now()]); } })"
    ".observe(document.getElementById('live'), {childList: true, subtree: true});"
    " window.lastServed = document.getElementById('served-count').textContent"
)


async def idle_cpu(daemon: Daemon, seconds: float) -> tuple[float, float]:
    """The daemon's CPU seconds per minute, and its wake-ups a second (voluntary context
    switches, all threads: steadier than CPU on a shared machine), over `seconds` of nothing
    happening."""
    assert daemon.process is not None
    pid = daemon.process.pid
    before, (woken, _) = cpu_seconds(pid), switches(pid)
    await asyncio.sleep(seconds)
    cpu = round((cpu_seconds(pid) - before) * 60 / seconds, 3)
    return cpu, round((switches(pid)[0] - woken) / seconds, 2)


async def flip(tab: Tab, watch: EventWatch, vpn: str, healthy: bool, expect: str) -> float:
    """One health change: ms from Docker's event to the DOM showing `expect` engines served."""
    await tab.evaluate("window.changes = []")
    await asyncio.to_thread(set_vpn_health, vpn, healthy)
    event_ns = await watch.next("healthy" if healthy else "unhealthy")
    changes = await tab.wait_for(f"(window.changes.find(c => c[0] === {expect!r}) || null)", timeout_s=30)
    return float(changes[1]) - event_ns / 1e6


async def page_size(url: str) -> dict[str, int]:
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "/") as resp:
            html = await resp.read()
        async with session.get(url + "/events") as resp:
            first = b""
            while b"event: page" not in first or not first.endswith(b"\n\n"):
                first += await resp.content.readany()
    return {"first_visit_bytes": len(html), "live_update_bytes": len(first), "requests": 1}


async def measure(daemon: Daemon, vpn: str, flips: int, idle_s: float, pages: int) -> dict[str, Any]:
    hide_ms: list[float] = []
    show_ms: list[float] = []
    watch = EventWatch(vpn, "health_status")
    try:
        size = await page_size(daemon.url)
        cpu_none, woken_none = await idle_cpu(daemon, idle_s)
        async with browser() as chrome:
            tab = await chrome.new_tab()
            await tab.goto(daemon.url + "/")
            await tab.wait_for("document.getElementById('conn').textContent === 'live'")
            await tab.evaluate(OBSERVE)
            for _ in range(flips):
                hide_ms.append(await flip(tab, watch, vpn, False, "0"))
                show_ms.append(await flip(tab, watch, vpn, True, "2"))
            await tab.close()
            tabs = []
            for _ in range(pages):
                opened = await chrome.new_tab(isolated=True)
                await opened.goto(daemon.url + "/")
                tabs.append(opened)
            for opened in tabs:
                await opened.wait_for("document.getElementById('conn').textContent === 'live'")
            await asyncio.sleep(5)  # let the pages settle before measuring
            cpu_pages, woken_pages = await idle_cpu(daemon, idle_s)
            for opened in tabs:
                await opened.close()
        await asyncio.sleep(5)
        cpu_none_again, woken_none_again = await idle_cpu(daemon, idle_s)
    finally:
        watch.close()
    return {
        "change_to_dom_ms": {"hide": summary(hide_ms), "show": summary(show_ms)},
        "page_size": size,
        "daemon_cpu_s_per_min_idle": {
            "no_page": cpu_none,
            f"{pages}_pages": cpu_pages,
            "no_page_after": cpu_none_again,
            "window_s": idle_s,
        },
        "daemon_wakeups_per_s_idle": {
            "no_page": woken_none,
            f"{pages}_pages": woken_pages,
            "no_page_after": woken_none_again,
        },
        "raw": {"hide_ms": hide_ms, "show_ms": show_ms},
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--flips", type=int, default=10)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--pages", type=int, default=20)
    args = parser.parse_args()
    vpn = f"bench-page-{uuid.uuid4().hex[:6]}"
    daemon = bench_daemon(
        "page",
        {"min_replicas": 2},
        {"mode": "single", "containers": [vpn], "health_check_interval_s": 0.5},
    )
    try:
        run_gluetun(vpn, forwarded_port=40001)
        wait_vpn_health(vpn, "healthy")
        daemon.start()
        await asyncio.to_thread(daemon.wait_engines, 2, 120)
        started = time.monotonic()
        report = await measure(daemon, vpn, args.flips, args.idle_seconds, args.pages)
        report |= {
            "machine": machine(),
            "setup": "daemon, 1 Gluetun stand-in, 2 stand-in engines; headless chromium, same machine",
            "seconds": round(time.monotonic() - started, 1),
        }
        write_result("status_page", report)
    finally:
        stop_daemon(daemon)
        docker("rm", "-f", vpn, check=False)


if __name__ == "__main__":
    asyncio.run(main())
