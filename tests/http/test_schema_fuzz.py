"""Schemathesis against `/openapi.json`, every check on: the document and the handlers agree.

The real app runs on a real loopback port (the `make_api` fixture: aiohttp's test server is an
`AppRunner` on 127.0.0.1, port 0) in the test's event loop, and schemathesis' engine (the
Python API under `st run`) runs in a worker thread against it: every operation, every phase
(examples, coverage, fuzzing, stateful) and every check, with the API key configured and sent.

The run is repeatable: a fixed seed, derandomized generation, no example database (hypothesis
still caches constants and Unicode tables in `.hypothesis/`, which ignores itself). The fast
subset (`make fuzz`, and in `make test`) is 5 examples an operation (~370 cases, a few seconds);
`FUZZ_EXAMPLES=200` (what `make soak` is to set) is ~2,500 cases in ~20 s, and `FUZZ_SEED=N`
picks other cases.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

from orchestrator.api.openapi import PATHS
from tests.http.conftest import SECRET, TWO_VPNS, WITH_KEY, MakeApi, started_body

if TYPE_CHECKING:  # schemathesis and hypothesis take seconds to import: only the test's run does
    from schemathesis.engine.recorder import CheckFailureInfo, ScenarioRecorder

FAST_EXAMPLES = 5
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES") or FAST_EXAMPLES)
SEED = int(os.environ.get("FUZZ_SEED") or 20261201)  # another seed explores other cases
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "positive_data_acceptance",
    "negative_data_rejection",
    "use_after_free",
    "ensure_resource_availability",
    "missing_required_header",
    "ignored_auth",
    "object_level_authorization",
    "unsupported_method",
    "allow_header_conformance",
)
# every documented operation but the document itself, which schemathesis leaves out
OPERATIONS = {f"{method.upper()} {path}" for path, item in PATHS.items() for method in item} - {
    "GET /openapi.json"
}
REJECTIONS = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]


@dataclass(slots=True)
class FuzzRun:
    cases: int = 0
    seconds: float = 0.0
    tested: set[str] = field(default_factory=set)
    failures: set[str] = field(default_factory=set)  # one line each: check, operation, reproduction
    errors: list[str] = field(default_factory=list)


def describe(check: str, info: CheckFailureInfo, recorder: ScenarioRecorder, case_id: str) -> str:
    """One failure: check, operation, what was answered, why it is wrong, and a curl line."""
    interaction = recorder.interactions.get(case_id)
    answer = interaction.response if interaction is not None else None
    got = f"{answer.status_code} {answer.content[:200]!r}" if answer is not None else "no answer"
    curl = info.code_sample.replace(SECRET, "***").strip().splitlines()[-1][:500]
    return f"{check}: {recorder.label}: {info.failure.title} -> {got}\n  {info.failure.message}\n  {curl}"


def fuzz(schema_url: str, examples: int) -> FuzzRun:
    """One schemathesis run, as `st run --checks all` would do it; blocking (run it in a thread)."""
    import schemathesis  # noqa: PLC0415 - seconds of imports, paid only by the run
    from schemathesis.config import SchemathesisConfig  # noqa: PLC0415
    from schemathesis.engine import StopReason, events, from_schema  # noqa: PLC0415

    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "workers": 1,
            "request-timeout": 10,
            "suppress-health-check": ["too_slow"],  # a busy machine must not fail the run
            "headers": {"Authorization": f"Bearer {SECRET}"},
            "generation": {"max-examples": examples, "deterministic": True, "database": "none"},
            "checks": {
                "enabled": True,
                **{name: {"enabled": True} for name in CHECKS},
                # 413 rejects invalid data too: a body over 64 KiB is refused before it is parsed
                "negative_data_rejection": {"enabled": True, "expected-statuses": REJECTIONS},
            },
            # the contract's answer while no engine is free: documented, and checked against its schema
            "operations": [
                {
                    "include-path": "/provision/acestream",
                    "include-method": "POST",
                    "checks": {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "503"]}},
                }
            ],
            "phases": {
                "enabled": True,
                "coverage": {
                    "unexpected-methods": ["GET", "PUT", "POST", "DELETE", "OPTIONS", "PATCH", "TRACE"],
                    "generate-duplicate-query-parameters": True,
                },
            },
        }
    )
    run = FuzzRun()
    started = time.monotonic()
    schema = schemathesis.openapi.from_url(schema_url, config=config)
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            run.cases += len(event.recorder.cases)
            for case_id, checks in event.recorder.checks.items():
                run.tested.add(event.recorder.cases[case_id].value.operation.label)
                for check in checks:
                    if check.failure_info is not None:
                        run.failures.add(describe(check.name, check.failure_info, event.recorder, case_id))
        elif isinstance(event, events.NonFatalError):
            run.errors.append(f"{event.label}: {event.info.format()}")
        elif isinstance(event, events.FatalError):
            run.errors.append(f"fatal: {event.exception!r}")
        elif isinstance(event, events.EngineFinished) and event.stop_reason != StopReason.COMPLETED:
            run.errors.append(f"stopped early: {event.stop_reason}")
    run.seconds = time.monotonic() - started
    return run


@pytest.mark.fuzz
async def test_schemathesis_finds_nothing(make_api: MakeApi) -> None:
    # a degraded pool: g1 healthy (an engine carrying a stream, a free one, one starting), g2
    # unhealthy (its engine hidden); a stream active and one ended
    api = await make_api(TWO_VPNS + WITH_KEY)
    api.add_vpn("g1", forwarded_port=40000)
    api.add_vpn("g2", state="unhealthy", ip="172.20.0.3")
    busy = api.add_engine(0, "g1", forwarded=True)
    api.add_engine(1, "g1")
    api.add_engine(2, "g1", ready=False)
    api.add_engine(0, "g2")
    for key in ("live", "done"):
        body = started_body("g1", busy.ports.http, key=key)
        assert (await api.post("/events/stream_started", body))[0] == 200
    assert (await api.post("/events/stream_ended", {"stream_id": "done|sess-1", "reason": "x"}))[0] == 200
    url = str(api.client.make_url("/openapi.json"))

    run = await asyncio.to_thread(fuzz, url, EXAMPLES)

    print(f"schemathesis: {run.cases} cases, {len(run.tested)} operations, {run.seconds:.1f} s")
    assert not run.errors, run.errors
    assert not run.failures, "\n".join(sorted(run.failures))
    assert run.tested == OPERATIONS and run.cases >= 100
    assert len(api.store.engines) == 4 and len(api.store.vpns) == 2  # the API never touches the pool
