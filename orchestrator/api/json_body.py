"""Reading and checking JSON request bodies, so no malformed body ever reaches the state store.

Proxies are other programs: a wrong type, a missing object or a huge body must come back as a
4xx JSON answer that names the problem (`field` is a dotted path such as `engine.port`), never
as a 500 and never as a half-applied change. The project has no validation library; this small
typed reader is enough for the few flat bodies the API accepts.

What a body must be, checked in this order (`Limits` holds the numbers):

- at most `max_body` bytes (64 KiB), else 413: a `Content-Length` over the limit is refused
  before a byte is read, and a gzip or deflate body (aiohttp undoes `Content-Encoding`) counts
  by its decoded size;
- received within `body_timeout_s` of the handler asking for it, else 408: a client that
  trickles its body does not hold a handler forever;
- empty (only `POST /provision/acestream` takes an empty body, whatever its `Content-Type`: it
  means `{}`), else 400;
- sent as `Content-Type: application/json` (any case, with no charset or `charset=utf-8`),
  else 415: the acexy proxy always sends it, and refusing `text/plain`, form types and a missing
  type means a web page cannot post to the API without a CORS preflight, which it never gets;
- UTF-8 (RFC 8259; no BOM, no UTF-16), else 400;
- JSON with no `NaN`/`Infinity` and no nesting too deep for the decoder, else 400;
- then each field of the right type (422; a field sent as `null` is one left out, unknown
  fields are ignored), strings at most 4,096 characters and valid Unicode
  (a lone surrogate escape such as `"\\ud800"` is refused), integers as JSON Schema has them
  (`6878.0` is 6878; `6878.5` is refused).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import hdrs, web

MAX_TEXT = 4096
JSON_TYPE = "application/json"
UTF8 = frozenset({"utf-8", "utf8"})
BLANK = " \t\n\r\x0b\x0c"  # what a required name may not consist of alone
NOT_BLANK = "[^ \\t\\n\\r\\x0b\\x0c]"  # the same rule as a JSON Schema pattern (ECMA 262, unanchored)


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """What a request may cost the server: the app's `client_max_size`, how long a handler waits
    for a body, how long an idle or half-sent connection (headers never finished) is kept, and
    how long the unread rest of a refused body is drained before the connection closes (so the
    client gets the answer rather than a reset)."""

    max_body: int = 64 * 1024
    body_timeout_s: float = 10.0
    # longer than the 90 s a Go client (acexy) keeps an idle connection, so the client closes first
    idle_timeout_s: float = 120.0
    linger_s: float = 10.0  # after refusing a body unread: how long the rest is drained, then closed


DEFAULT_LIMITS = Limits()
LIMITS: web.AppKey[Limits] = web.AppKey("limits")


class BodyError(Exception):
    """A request body the API cannot accept: carries the HTTP status, a code and the field.
    `close` asks for the connection to be closed after the answer (the rest of the body is not
    worth reading)."""

    def __init__(
        self, status: int, code: str, message: str, field: str | None = None, *, close: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.close = close


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _too_large(limit: int) -> BodyError:
    return BodyError(413, "body_too_large", f"request body larger than {limit} bytes", close=True)


def _check_media_type(request: web.Request) -> None:
    sent = request.headers.get(hdrs.CONTENT_TYPE)
    if sent is None:
        raise BodyError(415, "unsupported_media_type", f"no Content-Type; send 'Content-Type: {JSON_TYPE}'")
    charset = request.charset
    if request.content_type != JSON_TYPE or (charset is not None and charset.lower() not in UTF8):
        raise BodyError(
            415,
            "unsupported_media_type",
            f"Content-Type {sent[:100]!r} is not accepted; send 'Content-Type: {JSON_TYPE}' (UTF-8)",
        )


async def read_json(request: web.Request, *, empty_ok: bool = False) -> Any:
    """The decoded body; an empty body is `{}` when `empty_ok`, else an error."""
    limits = request.config_dict[LIMITS]
    if (request.content_length or 0) > limits.max_body:
        raise _too_large(limits.max_body)
    try:
        async with asyncio.timeout(limits.body_timeout_s):
            raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise _too_large(limits.max_body) from exc
    except TimeoutError as exc:
        raise BodyError(
            408, "body_timeout", f"request body not received within {limits.body_timeout_s:g}s", close=True
        ) from exc
    if not raw.strip():
        if empty_ok:
            return {}
        raise BodyError(400, "invalid_json", "request body is empty; a JSON object is expected")
    _check_media_type(request)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(
            400, "invalid_json", f"request body is not UTF-8: byte {exc.start} cannot be decoded"
        ) from exc
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
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


def _integral(value: Any) -> Any:
    """A number with no fractional part as an int: JSON Schema's `integer` (what the OpenAPI
    document promises) counts 6878.0 as 6878."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _is_unicode(text: str) -> bool:
    """False for a string holding a lone surrogate (JSON's `"\\ud800"`): not text any program
    downstream can encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def not_blank(text: str) -> bool:
    """The API's rule for a required name or key: a character other than ASCII white space (the
    OpenAPI document says the same with the pattern `NOT_BLANK`)."""
    return bool(text.strip(BLANK))


@dataclass(frozen=True, slots=True, kw_only=True)
class Fields:
    """One JSON object of a body, read field by field with its dotted path for error messages.
    A field sent as `null` is the same as a field left out."""

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
        if not empty_ok and not not_blank(value):
            raise self._fail(key, "must not be empty")
        if len(value) > MAX_TEXT:
            raise self._fail(key, f"longer than {MAX_TEXT} characters")
        if not _is_unicode(value):
            raise self._fail(key, "is not valid Unicode (a lone surrogate)")
        return value

    def integer(
        self, key: str, *, minimum: int, maximum: int, required: bool = True, default: int = 0
    ) -> int:
        value = _integral(self._get(key, required))
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, f"must be an integer, got {_kind(value)}")
        if not minimum <= value <= maximum:
            raise self._fail(key, f"must be between {minimum} and {maximum}, got {value}")
        return value

    def flag(self, key: str, *, default: bool) -> bool:
        """A boolean, also accepted as the integers 0 and 1 (Go proxies send `is_live: 1`)."""
        value = _integral(self._get(key, False))
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise self._fail(
            key, f"must be a boolean or 0/1, got {value if isinstance(value, int) else _kind(value)}"
        )

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
            if not _is_unicode(name):
                raise inner._fail(name.encode("utf-8", "backslashreplace").decode(), "is not valid Unicode")
            if not isinstance(item, str):
                raise inner._fail(name, f"must be a string, got {_kind(item)}")
        return {name: inner.text(name) for name in inner.data}
