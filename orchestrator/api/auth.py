"""Bearer-token check for every request that changes something (POST, PUT, PATCH, DELETE).

When `api.api_key` is set, a mutating request needs `Authorization: Bearer <key>`: a missing or
malformed header is a 401, a wrong key a 403, compared in constant time. Reads stay open: the
proxy polls `/orchestrator/status` without a key, and dashboards read `/engines` and `/metrics`.
`routing.py` puts the check in front of every write.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from orchestrator.api.responses import json_error


def auth_error(status: int, code: str, message: str) -> web.Response:
    """The generic `{error, message}` shape, plus the `detail` object proxies decode on
    provisioning errors, so a misconfigured key reads as a clear do-not-wait failure there too."""
    detail = {
        "error": code,
        "code": code,
        "message": message,
        "recovery_eta_seconds": 0,
        "can_retry": False,
        "should_wait": False,
    }
    headers = {"WWW-Authenticate": 'Bearer realm="acestream-orchestrator"'} if status == 401 else None
    return json_error(status, code, message, headers=headers, detail=detail)


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def check_bearer(header: str | None, key: str) -> web.Response | None:
    """None when the header carries `key`; else the 401/403 answer to send."""
    if header is None or not header.strip():
        return auth_error(
            401, "unauthorized", "missing Authorization header; send 'Authorization: Bearer <api key>'"
        )
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return auth_error(401, "unauthorized", "malformed Authorization header; expected 'Bearer <api key>'")
    if not hmac.compare_digest(_bytes(token), _bytes(key)):
        return auth_error(403, "forbidden", "the API key is not valid")
    return None
