"""Who may see the status page and its live stream (`page.py`).

On loopback, anyone. Off loopback with `api.api_key` set, only a holder of the key: a browser
signs in once through a form (`POST /login`, the key in the body, never in a URL) and gets an
HttpOnly, SameSite=Strict cookie holding a token derived from the key (HMAC-SHA256; the key
itself is never sent back); a script may send `Authorization: Bearer <key>` or Basic with the
key as password. Changing the key invalidates every cookie at once. Off loopback without a key
(`api.allow_unauthenticated: true`) the page is as open as the JSON reads. The JSON endpoints
keep their own rules (`auth.py`, `access.py`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from aiohttp import web

from orchestrator.api.access import holds_key, remote_is_loopback
from orchestrator.api.context import CONTEXT

COOKIE = "aceo_page"
LOGIN_PATH = "/login"  # the sign-in form: it changes nothing in the daemon, and checks the key itself
COOKIE_MAX_AGE_S = 30 * 24 * 3600


def page_token(key: str) -> str:
    """What the cookie holds: proves the key was given, and cannot be turned back into it."""
    return hmac.new(key.encode(), b"acestream-orchestrator status page", hashlib.sha256).hexdigest()


def _basic_holds(request: web.Request, key: str) -> bool:
    scheme, _, encoded = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        _, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return hmac.compare_digest(password.encode(), key.encode())


def key_matches(given: str, key: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), key.encode("utf-8", "surrogatepass"))


def page_allowed(request: web.Request) -> bool:
    if remote_is_loopback(request.remote):
        return True
    key = request.app[CONTEXT].config.api.api_key
    if not key:
        return True  # only reachable off loopback with api.allow_unauthenticated: true
    cookie = request.cookies.get(COOKIE, "")
    return (
        hmac.compare_digest(cookie.encode(), page_token(key).encode())
        or holds_key(request, key)
        or _basic_holds(request, key)
    )


def set_login_cookie(response: web.Response, key: str, *, secure: bool) -> None:
    response.set_cookie(
        COOKIE,
        page_token(key),
        max_age=COOKIE_MAX_AGE_S,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=secure,
    )
