"""The one JSON error shape every route answers with: `{"error", "message", ...}`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web


def json_error(
    status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None, **extra: Any
) -> web.Response:
    return web.json_response({"error": code, "message": message, **extra}, status=status, headers=headers)
