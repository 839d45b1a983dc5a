"""The daemon SIGKILLed in the middle of every kind of fault, five rounds (seeded: the seed is
printed; set FAULT_SEED to replay one): after each restart it settles into a world where every
invariant holds (testkit/invariants.py), and every stream reported before is still known.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable

from testkit.harness import Daemon
from testkit.rounds import ACTIONS, kill_round, new_bed, schedule

MakeDaemon = Callable[..., Daemon]


def test_kill_rounds_settle_with_every_invariant_holding(
    make_daemon: MakeDaemon, vpns: tuple[str, str]
) -> None:
    seed = int(os.environ.get("FAULT_SEED") or random.randrange(1 << 32))
    print(f"kill rounds seed: {seed} (FAULT_SEED={seed} replays it)")
    bed = new_bed(make_daemon(start=False), vpns, seed)
    actions = schedule(bed.rng, len(ACTIONS))
    for action in actions:
        print(f"round {bed.rounds + 1}: {action}")
        before = set(bed.reported)
        observed = kill_round(bed, action)  # fails listing every invariant broken
        assert before <= {s["id"] for s in observed.streams}, f"after {action}: streams forgotten"
    assert len(bed.reported) >= 2 and bed.rounds == len(ACTIONS)
