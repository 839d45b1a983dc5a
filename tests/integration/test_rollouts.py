"""Spec changes on the real Docker engine: a bad edit costs no engine, a good one rolls the pool
one engine at a time, the replacement first."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from testkit.harness import ENGINE_IMAGE, Daemon, wait_for

MakeDaemon = Callable[..., Daemon]


@contextmanager
def watching_visible(daemon: Daemon) -> Iterator[list[int]]:
    """How many engines `/engines` listed, sampled every 50 ms while the block runs."""
    seen: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            with suppress(OSError, AssertionError):
                seen.append(len(daemon.engines()))
            stop.wait(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(timeout=5)


def problems(daemon: Daemon) -> dict[str, str]:
    return {p["code"]: p["message"] for p in daemon.status()["problems"]}


def paused(daemon: Daemon) -> dict[str, Any] | None:
    found = problems(daemon)
    return found if "rollout_paused" in found else None


def test_an_image_typo_leaves_the_pool_intact_and_a_fix_rolls_it(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(engines={"min_replicas": 4, "min_free": 0, "max_replicas": 6})
    before = {e["container_id"] for e in daemon.wait_engines(4)}

    with watching_visible(daemon) as seen:
        daemon.write_config(engines={"image": "acebench/no-such-image:typo"})
        found = wait_for("the rollout paused", lambda: paused(daemon), timeout=30)
    assert "no-such-image" in found["rollout_paused"]
    assert {e["container_id"] for e in daemon.wait_engines(4)} == before
    assert set(daemon.managed()) == before, "no engine removed, none left half-made"
    assert min(seen) == 4
    assert "rollout_paused" in [ev.get("event") for ev in daemon.log_events()]

    # a valid edit (the old image back, with a new variable): the rollout resumes
    with watching_visible(daemon) as seen:
        daemon.write_config(engines={"image": ENGINE_IMAGE, "env": {"ROLLED": "1"}})
        after = wait_for(
            "every engine replaced",
            lambda: (
                ids
                if len(ids := {e["container_id"] for e in daemon.engines()}) == 4 and not ids & before
                else None
            ),
            timeout=120,
        )
    assert min(seen) >= 4, f"create-before-remove: /engines never drops below 4 (saw {min(seen)})"
    wait_for("the last old engine removed", lambda: set(daemon.managed()) == after, timeout=20)
    assert "rollout_paused" not in problems(daemon)


def test_an_engine_that_exits_at_once_pauses_the_rollout(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(engines={"min_replicas": 2, "min_free": 0, "max_replicas": 4})
    before = {e["container_id"] for e in daemon.wait_engines(2)}

    daemon.write_config(engines={"launch": {"preset": "custom", "entrypoint": ["sh", "-c", "exit 3"]}})
    found = wait_for("the rollout paused", lambda: paused(daemon), timeout=40)

    assert "exited" in found["rollout_paused"]
    assert {e["container_id"] for e in daemon.engines()} == before
    wait_for("the crashed engine cleaned up", lambda: set(daemon.managed()) == before, timeout=20)
    assert daemon.status()["provisioning"]["consecutive_failures"] >= 1
