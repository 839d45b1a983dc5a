"""The soak (`make soak`, about 25 minutes): bench/soak.py's two parts, SOAK_ROUNDS kill rounds
(50) and SOAK_MINUTES of churn (15): real tunnel blips of 1-20 s, Docker health flips, Gluetun
restarts, engine kills and daemon SIGKILLs under SOAK_VIEWERS viewers (6) watching through the
proxy (testkit/proxy_front.py, or the real acexy when ACEXY_BIN names a build). The figures go to
bench/results/stream_safety_soak.json; the run fails if a viewer was cut with no cause the test itself made
(its engine killed, its Gluetun restarted), if the daemon ended a stream on an engine the test
never touched, if an invariant broke, anything leaked or no viewer was served."""

from __future__ import annotations

import os
import random
from collections.abc import Callable

import pytest

from bench.common import write_result
from bench.soak import RESULT, clean, run_soak
from testkit.harness import Daemon

MakeDaemon = Callable[..., Daemon]


@pytest.mark.soak
def test_soak(make_daemon: MakeDaemon, vpns: tuple[str, str]) -> None:
    rounds = int(os.environ.get("SOAK_ROUNDS") or 50)
    minutes = float(os.environ.get("SOAK_MINUTES") or 15)
    seed = int(os.environ.get("FAULT_SEED") or random.randrange(1 << 32))
    print(f"soak seed: {seed} (FAULT_SEED={seed} replays the kill rounds' order)")
    report = run_soak(make_daemon(start=False, log_level="INFO"), vpns, rounds, minutes, seed)
    replay = f"SOAK_ROUNDS={rounds} SOAK_MINUTES={minutes} FAULT_SEED={seed}"
    report["command"] = f"{replay} pytest -m soak tests/faults/test_soak.py"
    write_result(RESULT, report)
    viewers = report["churn"]["viewers"]
    assert viewers["cut"]["unexplained"] == 0, viewers["unexplained_cuts"]
    assert clean(report), report
    assert viewers["served"] > 0, viewers
