"""The OpenAPI 3.1 description of the HTTP API, served at `GET /openapi.json`.

Written by hand (the project has no schema library) and kept honest by a test that walks the
app's router: every route and method must be described here, and nothing else. The schemas of
the acexy-facing calls spell out the types the proxy decodes (Go structs: ints are ints,
timestamps RFC 3339 with a zone or null, labels a string-to-string map).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from orchestrator import __version__
from orchestrator.api.json_body import DEFAULT_LIMITS, MAX_TEXT, NOT_BLANK
from orchestrator.state.history import HISTORY_KINDS

JSON = "application/json"
TIME = {"type": ["string", "null"], "format": "date-time"}
INT = {"type": "integer"}
STR = {"type": "string"}
BOOL = {"type": "boolean"}
STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
# What request bodies may hold (json_body.Fields): a field sent as null is one left out; every
# string is at most MAX_TEXT characters; a required name has a character other than white space.
TEXT = {"type": "string", "maxLength": MAX_TEXT}
OPT_TEXT = {"type": ["string", "null"], "maxLength": MAX_TEXT}
NAME = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT, "pattern": NOT_BLANK}
OPT_MAP = {"type": ["object", "null"], "additionalProperties": TEXT}
KIB = DEFAULT_LIMITS.max_body // 1024
BODY_RULES = (
    f"The body must be `Content-Type: application/json` (UTF-8, no BOM) and at most {KIB} KiB, "
    f"sent within {DEFAULT_LIMITS.body_timeout_s:g} s; a field sent as null counts as left out."
)


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: list[str] | None = None, **props: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    return schema


def reply(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description}
    if schema is not None:
        out["content"] = {JSON: {"schema": schema}}
    return out


ERROR = reply("Error", ref("Error"))
AUTH = {
    "401": reply("Missing or malformed bearer token", ref("Error")),
    "403": reply("Wrong API key", ref("Error")),
}


def bad_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "400": reply("Body is empty, not UTF-8 or not JSON", schema),
        "408": reply(f"Body not received within {DEFAULT_LIMITS.body_timeout_s:g} s", schema),
        "413": reply(f"Body larger than {KIB} KiB", schema),
        "415": reply("Content-Type is not application/json (UTF-8)", schema),
        "422": reply("Body has a wrong or missing field (named in `field`)", schema),
    }


BAD_BODY = bad_body(ref("Error"))

SCHEMAS: dict[str, Any] = {
    "Error": obj(["error", "message"], error=STR, message=STR, field={"type": ["string", "null"]}),
    "Engine": obj(
        [
            "container_id",
            "container_name",
            "host",
            "port",
            "labels",
            "forwarded",
            "health_status",
            "streams",
            "first_seen",
            "last_seen",
        ],
        container_id=STR,
        container_name=STR,
        host=STR,
        port=INT,
        host_http_port={"type": ["integer", "null"]},
        container_http_port=INT,
        https_port=INT,
        api_port=INT,
        p2p_port=INT,
        labels=STR_MAP,
        forwarded=BOOL,
        vpn_container={"type": ["string", "null"]},
        status=STR,
        ready=BOOL,
        visible=BOOL,
        health_status={"enum": ["healthy", "unhealthy", "unknown"]},
        streams={"type": "array", "items": STR},
        stream_count=INT,
        first_seen=TIME,
        last_seen=TIME,
        last_health_check=TIME,
        last_stream_usage=TIME,
        started_at=TIME,
        stalled_since=TIME,
    ),
    # id, key, playback_session_id, stat_url and command_url are left out (and `redacted` is
    # true) for a caller off loopback without the API key (docs/security.md)
    "Stream": obj(
        ["container_id", "status", "key_type", "started_at"],
        id=STR,
        container_id=STR,
        status={"enum": ["started", "ended"]},
        key_type=STR,
        key=STR,
        playback_session_id=STR,
        stat_url=STR,
        command_url=STR,
        is_live=BOOL,
        started_at=TIME,
        confirmed_at=TIME,
        ended_at=TIME,
        end_reason={"type": ["string", "null"]},
        stalled=BOOL,
        progress={
            "type": ["object", "null"],
            "description": "The engine's last stat_url answer: peers, speed_down, downloaded, "
            "progressing, sampled_at",
        },
        redacted=BOOL,
    ),
    "StreamStarted": obj(
        ["engine", "stream"],
        container_id={**OPT_TEXT, "description": "Ignored: often the proxy's own ID"},
        engine=obj(
            ["host", "port"],
            host={
                **NAME,
                "description": "Container name, short ID, IP, VPN name or IP; localhost/127.0.0.1/::1 match "
                "the one engine owning the port",
            },
            port={"type": "integer", "minimum": 1, "maximum": 65535},
        ),
        stream=obj(
            ["key_type", "key"],
            key_type={**NAME, "examples": ["content_id", "infohash", "url", "magnet"]},
            key=NAME,
        ),
        session={
            **obj(
                None,
                playback_session_id=OPT_TEXT,
                stat_url={**OPT_TEXT, "description": "May be empty"},
                command_url={**OPT_TEXT, "description": "May be empty"},
                is_live={"enum": [0, 1, True, False, None], "description": "Default true"},
            ),
            "type": ["object", "null"],
        },
        labels={
            **OPT_MAP,
            "description": "`stream_id` names the stream; when absent or empty, key|playback_session_id, "
            "or, without a playback_session_id either, key|<the engine's container ID, 12 characters>: "
            "two viewers of one key on two engines are two streams (`key|` then ends the one such stream "
            "of that key, and nothing when there are several)",
        },
    ),
    "StreamEnded": obj(
        ["stream_id"],
        stream_id=NAME,
        reason={**OPT_TEXT, "description": "Default `unspecified`"},
        container_id={**OPT_TEXT, "description": "Ignored"},
    ),
    "ProvisionRequest": obj(
        None,
        labels={**OPT_MAP, "description": "Validated, then ignored"},
        env={**OPT_MAP, "description": "Validated, then ignored"},
    ),
    "ProvisionResponse": obj(
        ["container_id", "container_name", "host_http_port", "container_http_port", "container_https_port"],
        container_id=STR,
        container_name=STR,
        host=STR,
        port=INT,
        host_http_port=INT,
        container_http_port=INT,
        container_https_port=INT,
        vpn_container={"type": ["string", "null"]},
        forwarded=BOOL,
    ),
    "BlockedDetail": obj(
        ["error", "code", "message", "recovery_eta_seconds", "can_retry", "should_wait"],
        error=STR,
        message=STR,
        can_retry=BOOL,
        should_wait=BOOL,
        code={
            "enum": [
                "provisioning_in_progress",
                "vpn_disconnected",
                "circuit_breaker",
                "max_capacity",
                "vpn_error",
                "general_error",
                "invalid_body",
            ]
        },
        recovery_eta_seconds={"type": ["integer", "null"]},
    ),
    "ProvisionError": obj(["detail"], detail=ref("BlockedDetail")),
    "OrchestratorStatus": obj(
        ["status", "engines", "streams", "capacity", "vpn", "provisioning", "timestamp"],
        status={"enum": ["healthy", "degraded", "unavailable"]},
        engines=obj(
            ["total", "running", "healthy", "unhealthy"],
            total=INT,
            running=INT,
            healthy=INT,
            unhealthy=INT,
            starting=INT,
            pending=INT,
        ),
        streams=obj(["active", "total"], active=INT, total=INT),
        capacity=obj(
            ["total", "used", "available", "max_replicas", "min_replicas"],
            total=INT,
            used=INT,
            available=INT,
            max_replicas=INT,
            min_replicas=INT,
        ),
        vpn=obj(
            ["enabled", "connected", "health", "container", "forwarded_port"],
            enabled=BOOL,
            connected=BOOL,
            health=STR,
            container={"type": ["string", "null"]},
            forwarded_port={"type": ["integer", "null"]},
            mode=STR,
            containers={"type": "array", "items": {"type": "object"}},
        ),
        provisioning=obj(
            [
                "can_provision",
                "circuit_breaker_state",
                "last_failure",
                "blocked_reason",
                "blocked_reason_details",
            ],
            can_provision=BOOL,
            circuit_breaker_state={"enum": ["closed", "open", "half_open"]},
            last_failure=TIME,
            blocked_reason={"type": ["string", "null"]},
            blocked_reason_details={"oneOf": [ref("BlockedDetail"), {"type": "null"}]},
            demand_until=TIME,
        ),
        timestamp={"type": "string", "format": "date-time"},
    ),
    "Generic": {"type": "object", "description": "Operator-facing document; see the daemon's docs"},
}

_KIND = "(" + "|".join(HISTORY_KINDS) + ")"
KINDS_PATTERN = f"^{_KIND}(,{_KIND})*$"
SECURED: list[dict[str, list[str]]] = [{"bearer": []}]
POST_ERRORS = {**BAD_BODY, **AUTH}

PATHS: dict[str, Any] = {
    "/engines": {
        "get": {
            "summary": "Visible engines (the proxy's engine list)",
            "responses": {"200": reply("Engines", {"type": "array", "items": ref("Engine")})},
        }
    },
    "/engines/{container_id}": {
        "get": {
            "summary": "One managed engine (visible or not), with `stream_details`",
            "parameters": [
                {
                    "name": "container_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "minLength": 1},
                    "description": "Full ID, 12+ character prefix, or container name",
                }
            ],
            "responses": {
                "200": reply(
                    "Engine",
                    {
                        "allOf": [
                            ref("Engine"),
                            obj(None, stream_details={"type": "array", "items": ref("Stream")}),
                        ]
                    },
                ),
                "404": ERROR,
            },
        }
    },
    "/health": {
        "get": {
            "summary": "Liveness: 503 when the daemon answers but is stuck inside",
            "description": "503 when Docker has been out of reach for 60 s, or the event source "
            "made no progress (no event, no resync) for 150 s.",
            "responses": {
                "200": reply("Alive", obj(["status"], status=STR, uptime_s={"type": "number"})),
                "503": reply(
                    "Stuck",
                    obj(
                        ["status", "reasons"],
                        status=STR,
                        uptime_s={"type": "number"},
                        reasons={"type": "array", "items": STR},
                    ),
                ),
            },
        }
    },
    "/status": {
        "get": {
            "summary": "Operator status: desired vs observed, problems, errors",
            "responses": {"200": reply("Status", ref("Generic"))},
        }
    },
    "/history": {
        "get": {
            "summary": "What the daemon did and why: the last entries of its history, oldest first",
            "description": "Each entry: seq, at, kind, target, reason, trigger, outcome, engine, vpn. "
            "Kept across restarts, bounded (`bound`); the live stream of the same is "
            "`GET /history/stream` (server-sent events, not described here).",
            "parameters": [
                {"name": "engine", "in": "query", "schema": {"type": "string", "minLength": 1}},
                {"name": "vpn", "in": "query", "schema": {"type": "string", "minLength": 1}},
                {
                    "name": "kind",
                    "in": "query",
                    "schema": {"type": "string", "pattern": KINDS_PATTERN},
                    "description": "One or more kinds, comma-separated: " + ", ".join(HISTORY_KINDS),
                },
                {
                    "name": "since",
                    "in": "query",
                    "schema": {"type": "string", "format": "date-time"},
                    "description": "RFC 3339 with a zone: entries at or after it",
                },
            ],
            "responses": {
                "200": reply(
                    "History",
                    obj(["bound", "entries"], bound=INT, entries={"type": "array", "items": ref("Generic")}),
                ),
                "400": ERROR,
            },
        }
    },
    "/vpn/status": {
        "get": {
            "summary": "Every configured VPN's state",
            "responses": {"200": reply("VPNs", ref("Generic"))},
        }
    },
    "/events/stream_started": {
        "post": {
            "summary": "The proxy started a stream on the engine at (host, port)",
            "description": "The engine is found by engine.host/engine.port, never by container_id. "
            "The same stream ID reported again replaces the record. With "
            "engines.max_streams_per_engine streams already on the engine, the one with the oldest "
            "sign of life is ended (reason evicted_over_cap) to make room. " + BODY_RULES,
            "security": SECURED,
            "requestBody": {"required": True, "content": {JSON: {"schema": ref("StreamStarted")}}},
            "responses": {
                "200": reply("Recorded stream", ref("Stream")),
                **POST_ERRORS,
                "404": reply("No engine owns that host/port", ref("Error")),
                "409": reply("Several engines own that port", ref("Error")),
            },
        }
    },
    "/events/stream_ended": {
        "post": {
            "summary": "The proxy ended a stream",
            "security": SECURED,
            "description": "Ends exactly that stream. An unknown ID ends nothing (404); a stream "
            "already ended answers 200 with its first ending unchanged. " + BODY_RULES,
            "requestBody": {"required": True, "content": {JSON: {"schema": ref("StreamEnded")}}},
            "responses": {
                "200": reply("Ended stream", ref("Stream")),
                **POST_ERRORS,
                "404": reply("Unknown stream ID", ref("Error")),
            },
        }
    },
    "/streams": {
        "get": {
            "summary": "Streams, active first then recent history",
            "description": "Each parameter at most once and, when given, not empty. A caller off "
            "loopback without the API key gets each stream without id, key, playback_session_id, "
            "stat_url and command_url (and redacted: true).",
            "parameters": [
                {
                    "name": "container_id",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "minLength": 1},
                    "description": "Full ID, 12+ character prefix, or container name",
                },
                {
                    "name": "status",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "enum": ["started", "ended"]},
                },
            ],
            "responses": {
                "200": reply("Streams", {"type": "array", "items": ref("Stream")}),
                "400": reply(
                    "A parameter empty, repeated, or a status other than started/ended", ref("Error")
                ),
            },
        }
    },
    "/provision/acestream": {
        "post": {
            "summary": "Get a free engine now, or a structured reason to wait",
            "description": "Answers at once, never waiting on Docker. 200 hands out a ready engine "
            "with no active stream. Otherwise 503 (500 for general_error) with "
            "`detail`; while `should_wait` is true, one extra free engine is wanted "
            "for 60 s (repeated calls extend that single demand). Non-empty `labels` "
            "and `env` are validated and accepted but ignored: every engine follows "
            "the YAML's engines.labels and engines.env. An empty body, whatever its "
            "Content-Type, is `{}`; any other: " + BODY_RULES,
            "security": SECURED,
            "requestBody": {"required": False, "content": {JSON: {"schema": ref("ProvisionRequest")}}},
            "responses": {
                "200": reply("A free engine", ref("ProvisionResponse")),
                "503": {
                    **reply("None free yet, or blocked", ref("ProvisionError")),
                    "headers": {
                        "Retry-After": {
                            "description": "recovery_eta_seconds, when there is one",
                            "schema": {"type": "integer", "minimum": 1},
                        }
                    },
                },
                "500": reply("general_error", ref("ProvisionError")),
                **bad_body(ref("ProvisionError")),
                **AUTH,
            },
        }
    },
    "/orchestrator/status": {
        "get": {
            "summary": "Proxy-facing status (polled without auth)",
            "responses": {"200": reply("Status", ref("OrchestratorStatus"))},
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics (text exposition format)",
            "responses": {"200": {"description": "Metrics", "content": {"text/plain": {"schema": STR}}}},
        }
    },
    "/openapi.json": {
        "get": {"summary": "This document", "responses": {"200": reply("OpenAPI 3.1", {"type": "object"})}}
    },
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "acestream-orchestrator",
        "version": __version__,
        "description": "Keeps a pool of AceStream engines behind Gluetun VPNs; "
        "mutating calls need `Authorization: Bearer <api.api_key>` when set.",
    },
    "paths": PATHS,
    "components": {"schemas": SCHEMAS, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
}


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(DOCUMENT)
