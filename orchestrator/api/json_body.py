"""Reading and checking JSON request bodies, so no malformed body ever reaches the state store.

Proxies are other programs: a wrong type, a missing object or a huge body must come back as a
4xx JSON answer that names the problem (`field` is a dotted path such as `engine.port`), never
as a 500 and never as a half-applied change. The project has no validation library; this small
typed reader is enough for the few flat bodies the API accepts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

MAX_TEXT = 4096


class BodyError(Exception):
    """A request body the API cannot accept: carries the HTTP status, a code and the field."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_json(request: web.Request, *, empty_ok: bool = False) -> Any:
    """The decoded body; an empty body is `{}` when `empty_ok`, else an error."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise BodyError(
            413, "body_too_large", f"request body larger than {request.client_max_size} bytes"
        ) from exc
    if not raw.strip():
        if empty_ok:
            return {}
        raise BodyError(400, "invalid_json", "request body is empty; a JSON object is expected")
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise BodyError(400, "invalid_json", f"request body is not valid JSON: {reason}") from exc


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }.get(type(value), type(value).__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Fields:
    """One JSON object of a body, read field by field with its dotted path for error messages."""

    data: Mapping[str, Any]
    path: str = ""

    @classmethod
    def of(cls, value: Any, path: str = "") -> Fields:
        if not isinstance(value, dict):
            where = path or "request body"
            raise BodyError(
                422, "invalid_body", f"{where} must be a JSON object, got {_kind(value)}", path or None
            )
        return cls(data=value, path=path)

    def _name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def _fail(self, key: str, message: str) -> BodyError:
        return BodyError(422, "invalid_body", f"{self._name(key)}: {message}", self._name(key))

    def _get(self, key: str, required: bool) -> Any:
        value = self.data.get(key)
        if value is None and required:
            raise self._fail(key, "is required")
        return value

    def text(self, key: str, *, required: bool = True, empty_ok: bool = True, default: str = "") -> str:
        value = self._get(key, required)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self._fail(key, f"must be a string, got {_kind(value)}")
        if not empty_ok and not value.strip():
            raise self._fail(key, "must not be empty")
        if len(value) > MAX_TEXT:
            raise self._fail(key, f"longer than {MAX_TEXT} characters")
        return value

    def integer(
        self, key: str, *, minimum: int, maximum: int, required: bool = True, default: int = 0
    ) -> int:
        value = self._get(key, required)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, f"must be an integer, got {_kind(value)}")
        if not minimum <= value <= maximum:
            raise self._fail(key, f"must be between {minimum} and {maximum}, got {value}")
        return value

    def flag(self, key: str, *, default: bool) -> bool:
        """A boolean, also accepted as the integers 0 and 1 (Go proxies send `is_live: 1`)."""
        value = self._get(key, False)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise self._fail(key, f"must be a boolean or 0/1, got {value!r}")

    def nested(self, key: str, *, required: bool = True) -> Fields:
        value = self._get(key, required)
        return Fields(data={}, path=self._name(key)) if value is None else Fields.of(value, self._name(key))

    def string_map(self, key: str) -> dict[str, str]:
        """An optional object of string to string (labels, env)."""
        value = self._get(key, False)
        if value is None:
            return {}
        inner = Fields.of(value, self._name(key))
        for name, item in inner.data.items():
            if not isinstance(item, str):
                raise inner._fail(name, f"must be a string, got {_kind(item)}")
        return {name: inner.text(name) for name in inner.data}
