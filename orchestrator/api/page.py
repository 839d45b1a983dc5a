"""The status page at `/`: what the daemon knows, for a person, live.

Server-rendered HTML (readable with the script off), one small stylesheet and one small script
shipped in the package (`static/`, inlined into the page: one request, nothing fetched from
anywhere else, a Content-Security-Policy that allows only those two by hash). The script opens
`GET /events`, a server-sent event stream carrying the same `<main>` fragment again after every
change of the store, and swaps it in; the browser reconnects by itself after a daemon restart.
The fragment is rendered once per change of what it shows (`page_key`) and caller view (full
or redacted), so twenty open pages cost one rendering per change, and little while nothing
changes.

Everything shown comes from the views the JSON API serves (`views.py`, `status_view.py`): the
page restates no wire shape. Read-only: the only form is the sign-in (`page_auth.py`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from datetime import UTC, datetime
from html import escape
from importlib import resources
from typing import Any

from aiohttp import web

from orchestrator.api.access import sees_full_details
from orchestrator.api.context import CONTEXT, ApiContext
from orchestrator.api.page_auth import LOGIN_PATH, key_matches, page_allowed, set_login_cookie
from orchestrator.api.responses import json_error
from orchestrator.api.routing import add_get, add_post
from orchestrator.api.sse import Pulse, event, follow
from orchestrator.api.status_view import status_body
from orchestrator.api.views import engine_view, history_view
from orchestrator.state.liveness import unhealthy_reasons

PAGE_HISTORY = 15  # the last entries of the history the page shows
HEARD_GRAIN_S = 10.0
AGE_TEXT = re.compile(r'(data-since="[^"]*">)[^<]*(</time>)')
PAGE_CACHE: web.AppKey[dict[bool, tuple[tuple[object, ...], str]]] = web.AppKey("page_cache")
PAGE_PULSE: web.AppKey[Pulse] = web.AppKey("page_pulse")
STYLE = resources.files("orchestrator.api").joinpath("static/page.css").read_text()
SCRIPT = resources.files("orchestrator.api").joinpath("static/page.js").read_text()


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


CSP = (
    f"default-src 'none'; style-src {_hash(STYLE)}; script-src {_hash(SCRIPT)}; connect-src 'self'; "
    "img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


# -- small pieces of HTML ---------------------------------------------------------------------
def _t(value: object) -> str:
    return escape("—" if value is None or value == "" else str(value))


def _age(at: str | None) -> str:
    """A time, with its age at rendering; the script keeps the age current (`data-since`)."""
    if at is None:
        return "—"
    seconds = max(0.0, time.time() - datetime.fromisoformat(at).timestamp())
    at = escape(at)
    return f'<time datetime="{at}" title="{at}" data-since="{at}">{_ago(seconds)}</time>'


def _beat(at: str | None) -> str:
    """A heartbeat's time (a VPN last heard, the last Docker event, the last reconcile pass),
    floored to HEARD_GRAIN_S: one that moves every second changes the page once per grain,
    so an idle pool sends an open page an update at most that often."""
    if at is None:
        return "—"
    stamp = datetime.fromisoformat(at).timestamp()
    return _age(datetime.fromtimestamp(stamp - stamp % HEARD_GRAIN_S, UTC).isoformat())


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} d"


def _clock(at: str | None) -> str:
    if at is None:
        return "—"
    shown = datetime.fromisoformat(at).astimezone(UTC).strftime("%H:%M:%S")
    return f'<time datetime="{escape(at)}" title="{escape(at)}">{shown}</time>'


def _badge(word: str, tone: str) -> str:
    return f'<span class="badge {tone}">{escape(word)}</span>'


def _table(caption: str, head: list[str], rows: list[list[str]], empty: str, name: str) -> str:
    title = f'<section id="{name}"><h2>{escape(caption)}</h2>'
    if not rows:
        return f'{title}<p class="empty">{escape(empty)}</p></section>'
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>"
        + "".join(f'<td data-label="{escape(h)}">{c}</td>' for h, c in zip(head, r, strict=True))
        + "</tr>"
        for r in rows
    )
    return f'{title}<table class="{name}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table></section>'


# -- the verdict ------------------------------------------------------------------------------
def verdict(ctx: ApiContext, status: dict[str, Any], now: float) -> tuple[str, str]:
    """ok, degraded or down, with the reason in words."""
    stuck = unhealthy_reasons(ctx.store.telemetry, now)
    if stuck:
        return "down", "; ".join(stuck)
    observed, desired = status["observed"], status["desired"]
    if not status["docker"]["connected"]:
        return "down", f"Docker's event stream is down: {status['docker']['error'] or 'connecting'}"
    if observed["visible"] == 0 and desired["min_replicas"] > 0:
        return "down", "no engine can take a stream (none on /engines)"
    reasons = [p["message"] for p in status["problems"]]
    reasons += [f"VPN {v['name']} is {v['state']}" for v in status["vpn"] if not v["healthy"]]
    if status["config"]["last_error"]:
        reasons.append(f"configuration edit rejected: {status['config']['last_error']['message']}")
    if not status["state"]["durable"] and not ctx.store.memory_only:
        reasons.append(f"streams kept in memory only: {status['state']['error']}")
    if observed["visible"] < desired["min_replicas"]:
        reasons.append(f"{observed['visible']} engines on /engines, {desired['min_replicas']} wanted")
    if reasons:
        return "degraded", "; ".join(dict.fromkeys(reasons))
    return "ok", f"{observed['visible']} engines ready on /engines"


# -- the sections -----------------------------------------------------------------------------
def _vpns(ctx: ApiContext, status: dict[str, Any]) -> str:
    holders = {e.vpn: e.name for e in ctx.store.engines.values() if e.forwarded}
    rows = []
    for v in status["vpn"]:
        probe = v["tunnel_probe"]
        probe_word = (
            "—"
            if probe is None
            else _t({True: "tunnel up", False: "tunnel down", None: "no verdict"}[probe["tunnel_up"]])
            + (f"<br><small>{_t(probe['error'])}</small>" if probe["error"] else "")
        )
        control = _t(v["control_status"]) + (
            f'<br><small class="bad">{_t(v["control_error"])}</small>' if v["control_error"] else ""
        )
        port = v["forwarded_port"]
        forwarded = "—" if not port else f"{port} → {_t(holders.get(v['name'], 'no engine yet'))}"
        rows.append(
            [
                f"<b>{_t(v['name'])}</b>",
                _badge(v["state"], "good" if v["healthy"] else "bad"),
                _t(v["docker_health"]),
                control,
                probe_word,
                _t(v["public_ip"]),
                _age(v["started_at"]),
                forwarded,
                _age(v["reconnected_at"]),
                _beat(v["last_heard"]),
            ]
        )
    head = [
        "VPN",
        "verdict",
        "Docker health",
        "control server",
        "probe",
        "exit IP",
        "up for",
        "forwarded port",
        "last reconnect",
        "last heard",
    ]
    return _table("VPNs", head, rows, "No VPN configured: engines run on the host's network.", "vpns")


def _engines(ctx: ApiContext, full: bool, history: list[dict[str, Any]]) -> str:
    store, cap = ctx.store, ctx.config.max_streams_per_engine
    restarts: dict[str, int] = {}
    for h in history:
        if h["kind"] == "restarted" and h["engine"]:
            restarts[h["engine"]] = restarts.get(h["engine"], 0) + 1
    rows = []
    for engine in sorted(store.engines.values(), key=lambda e: (e.vpn or "", e.slot, e.name)):
        view = engine_view(store, engine, ctx.config.address, full=full)
        why = store.why_hidden(engine)
        if view["visible"]:
            state = _badge("ready", "good")
        elif why and why.startswith("draining"):
            state = _badge("draining", "warn") + f"<br><small>{_t(why)}</small>"
        elif engine.status == "running" and not engine.ready and view["last_health_check"] is None:
            state = _badge("starting", "warn") + f"<br><small>{_t(why)}</small>"
        elif engine.status == "running" and not engine.ready:
            state = _badge("stalled", "bad") + "<br><small>stopped answering its API</small>"
        else:
            state = _badge("hidden", "bad") + f"<br><small>{_t(why)}</small>"
        http = view["host_http_port"] or view["port"]
        rows.append(
            [
                f"<b>{_t(view['container_name'])}</b>" + (" ★" if view["forwarded"] else ""),
                _t(view["vpn_container"]),
                f"{_t(http)} / {_t(view['p2p_port'])}",
                state,
                f"{view['stream_count']} / {cap}",
                _age(view["started_at"]),
                str(restarts.get(engine.name, 0)),
            ]
        )
    head = ["engine", "VPN", "HTTP / P2P", "state", "streams", "up for", "restarts"]
    return _table("Engines", head, rows, "No engine yet.", "engines")


def _served(ctx: ApiContext, full: bool) -> str:
    views = [engine_view(ctx.store, e, ctx.config.address, full=full) for e in ctx.store.visible]
    body = escape(json.dumps(views, indent=1))
    listed = ", ".join(f"{_t(v['container_name'])} at {_t(v['host'])}:{_t(v['port'])}" for v in views)
    return (
        f'<section id="served"><h2>What <code>/engines</code> serves now</h2>'
        f'<p><b id="served-count">{len(views)}</b> engine(s): '
        + (listed or "none")
        + f"</p><details><summary>The JSON</summary><pre>{body}</pre></details></section>"
    )


def _history(history: list[dict[str, Any]]) -> str:
    rows = [
        [
            _clock(h["at"]),
            _t(h["kind"].replace("_", " ")),
            _t(h["target"]),
            _t(h["reason"]),
            _t(h["trigger"]),
            _t(h["outcome"]),
        ]
        for h in reversed(history)
    ]
    head = ["time (UTC)", "action", "target", "why", "trigger", "outcome"]
    return _table("Last actions", head, rows, "Nothing done yet.", "history")


def _problems(ctx: ApiContext, status: dict[str, Any]) -> str:
    items = [f"<li>{_t(p['message'])}</li>" for p in status["problems"]]
    error = status["config"]["last_error"]
    if error:
        where = " ".join(str(x) for x in (error["file"], error["line"] and f"line {error['line']}") if x)
        items.append(f"<li>Configuration edit rejected ({_t(where)}): {_t(error['message'])}</li>")
    for v in status["vpn"]:
        if v["control_error"] and "401" in str(v["control_error"]):
            items.append(
                f"<li>Gluetun {_t(v['name'])} answers 401 to the daemon: set <code>vpn.api_key</code> "
                "(or <code>vpn.api_user</code> and <code>vpn.api_password</code>) to what Gluetun's "
                "control server expects.</li>"
            )
    if not status["state"]["durable"] and not ctx.store.memory_only:
        items.append(f"<li>Streams kept in memory only: {_t(status['state']['error'])}</li>")
    inner = "<ul>" + "".join(items) + "</ul>" if items else '<p class="empty">None.</p>'
    return f'<section id="problems"><h2>Configuration and problems</h2>{inner}</section>'


def _heard(status: dict[str, Any]) -> str:
    docker = status["docker"]
    state = _badge("connected" if docker["connected"] else "down", "good" if docker["connected"] else "bad")
    return (
        '<section id="heard"><h2>Last heard</h2><ul>'
        f"<li>Docker's event stream: {state} last event {_beat(docker['last_event_at'])} ago"
        + (f' <small class="bad">{_t(docker["error"])}</small>' if docker["error"] else "")
        + "</li>"
        + "".join(f"<li>VPN {_t(v['name'])}: {_beat(v['last_heard'])} ago</li>" for v in status["vpn"])
        + f"<li>Last reconcile: {_beat(status['last_reconcile'])} ago</li></ul></section>"
    )


def render_main(ctx: ApiContext, full: bool) -> str:
    """The `<main>` fragment: the page's content, and what each live update carries."""
    now = time.time()
    status = status_body(ctx, now)
    history = [history_view(e) for e in ctx.store.history.select()]
    word, reason = verdict(ctx, status, now)
    return (
        f'<header class="verdict {word}" id="verdict"><b>{word}</b> <span>{_t(reason)}</span></header>'
        + _vpns(ctx, status)
        + _engines(ctx, full, history)
        + _served(ctx, full)
        + _history(history[-PAGE_HISTORY:])
        + _problems(ctx, status)
        + _heard(status)
    )


def page_key(ctx: ApiContext, now: float) -> tuple[object, ...]:
    """What the page shows, cheaply compared: the store's version moves on every heartbeat (a
    health check, a reconcile pass), most of which change nothing on the page; rendering it
    again costs milliseconds, comparing this microseconds."""
    store, watcher, plan = ctx.store, ctx.watcher, ctx.store.telemetry.last_plan
    return (
        tuple(store.engines.values()),
        tuple(store.vpns.values()),
        tuple(e.container_id for e in store.visible),
        tuple(store.demand.streams.count(cid) for cid in store.engines),
        store.history.last_seq,
        store.ledger.pending_count,
        plan.problems if plan else None,
        (watcher.loaded_at, watcher.error_at, watcher.held, ctx.config),
        (
            store.telemetry.docker_connected,
            store.telemetry.docker_error,
            store.state_error,
            store.ledger.breaker_state(now),
        ),
        int(now // HEARD_GRAIN_S),  # the heartbeat times shown, to HEARD_GRAIN_S
    )


def cached_main(request: web.Request) -> str:
    ctx = request.app[CONTEXT]
    full = sees_full_details(request)
    cache = request.app[PAGE_CACHE]
    version = page_key(ctx, time.time())
    hit = cache.get(full)
    if hit is None or hit[0] != version:
        # without the ages' text (the script fills it in): the same state, the same fragment,
        # so a change nobody sees on the page is not sent
        hit = (version, AGE_TEXT.sub(r"\1\2", render_main(ctx, full)))
        cache[full] = hit
    return hit[1]


def _document(title: str, main: str, *, live: bool) -> str:
    script = f"<script>{SCRIPT}</script>" if live else ""
    state = '<span id="conn" class="off">snapshot</span>' if live else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'  # no /favicon.ico request
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f'<div class="top"><h1>{escape(title)}</h1>{state}</div>'
        f'<main id="live">{main}</main>{script}</body></html>'
    )


def _login_form(message: str | None = None) -> str:
    note = f'<p class="bad">{escape(message)}</p>' if message else ""
    return (
        f"<section><h2>Sign in</h2>{note}<p>This page needs the API key (<code>api.api_key</code>).</p>"
        f'<form method="post" action="{LOGIN_PATH[1:]}"><label>API key '
        '<input type="password" name="key" autocomplete="current-password" required></label> '
        '<button type="submit">Sign in</button></form></section>'
    )


# -- the handlers -----------------------------------------------------------------------------
async def page(request: web.Request) -> web.Response:
    if not page_allowed(request):
        body = _document("acestream-orchestrator", _login_form(), live=False)
        return web.Response(text=body, status=401, content_type="text/html", headers=HEADERS)
    ctx = request.app[CONTEXT]  # rendered afresh: the ages in it are as of now
    body = _document("acestream-orchestrator", render_main(ctx, sees_full_details(request)), live=True)
    return web.Response(text=body, content_type="text/html", headers=HEADERS)


async def login(request: web.Request) -> web.Response:
    key = request.app[CONTEXT].config.api.api_key
    try:
        form = await request.post()
    except ValueError as exc:  # multipart without its boundary, bytes that are not UTF-8, ...
        return json_error(400, "invalid_form", f"the sign-in form could not be read: {exc}")
    given = form.get("key")
    if not key or (isinstance(given, str) and key_matches(given, key)):
        response = web.Response(status=303, headers={"Location": "./", "Cache-Control": "no-store"})
        if key:
            set_login_cookie(response, key, secure=request.secure)
        return response
    body = _document("acestream-orchestrator", _login_form("That is not the API key."), live=False)
    return web.Response(text=body, status=403, content_type="text/html", headers=HEADERS)


async def page_events(request: web.Request) -> web.StreamResponse:
    if not page_allowed(request):
        return web.Response(text="sign in first\n", status=401, content_type="text/plain")
    sent = ""

    def produce() -> bytes | None:
        nonlocal sent
        main = cached_main(request)
        if main == sent:
            return None
        sent = main
        return event("page", main)

    return await follow(request, request.app[PAGE_PULSE], produce)


# not part of the JSON API (openapi.py leaves them out): HTML, a form and an event stream
PAGE_ROUTES = frozenset({("/", "get"), (LOGIN_PATH, "post"), ("/events", "get"), ("/history/stream", "get")})


def add_page_routes(app: web.Application) -> None:
    app[PAGE_CACHE] = {}
    ctx = app[CONTEXT]
    app[PAGE_PULSE] = Pulse(ctx.store, lambda: page_key(ctx, time.time()))
    add_get(app, "/", page)
    add_post(app, LOGIN_PATH, login, needs_key=False)  # the form checks the key itself
    add_get(app, "/events", page_events)
