"""Who sees what: the full stream details only for callers on loopback or holding the API key.

A stream's `command_url` and `stat_url` drive the engine's playback session (`command_url` with
`method=stop` ends it for the viewer), and its ID and `playback_session_id` name that session.
A caller from another machine without the key gets a view with these left out (and the content
key with them); what the acexy proxy reads of `GET /streams` (the list length and each item's
`status`) is in both views. Reads never answer 401/403: a missing or wrong key on a read only
narrows the view. The key is read per request, like the write check (`auth`).
"""

from __future__ import annotations

import functools
import hmac
import ipaddress

from aiohttp import web

from orchestrator.api.context import CONTEXT
from orchestrator.config import ApiConfig
from orchestrator.config.checks import is_loopback_host


@functools.lru_cache(maxsize=1024)  # asked on every read; a host has few peers (parsing is ~8 % of a GET)
def remote_is_loopback(remote: str | None) -> bool:
    """The peer address is this machine's loopback (127.0.0.0/8, ::1, or ::ffff:127.x.y.z)."""
    if not remote:
        return False
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def holds_key(request: web.Request, key: str | None) -> bool:
    """The request carries `Authorization: Bearer <key>` (scheme case-insensitive)."""
    if not key:
        return False
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    token = token.strip()
    return scheme.lower() == "bearer" and hmac.compare_digest(
        token.encode("utf-8", "surrogatepass"), key.encode("utf-8", "surrogatepass")
    )


def sees_full_details(request: web.Request) -> bool:
    """Loopback callers, and callers holding the API key, see stream commands and session IDs."""
    if remote_is_loopback(request.remote):
        return True
    return holds_key(request, request.app[CONTEXT].config.api.api_key)


def access_summary(api: ApiConfig) -> tuple[bool, dict[str, str]]:
    """What the start-up log line says: who can reach the API and what a write needs. The flag
    is True when anyone who reaches it may write (worth a warning)."""
    local = is_loopback_host(api.host)
    reach = (
        f"this machine only (loopback {api.host}:{api.port})"
        if local
        else f"any machine that can route to {api.host}:{api.port}"
    )
    if api.api_key:
        writes = "need Authorization: Bearer <api.api_key>"
        details = "to loopback callers and holders of api.api_key"
    elif local:
        writes = "open to anyone on this machine (no api.api_key)"
        details = "to every caller (all are on loopback)"
    else:
        writes = "OPEN TO ANYONE WHO REACHES IT (api.allow_unauthenticated: true, no api.api_key)"
        details = "to loopback callers only"
    return (not api.api_key and not local), {
        "reach": reach,
        "writes": writes,
        "stream_details_shown": details,
    }
