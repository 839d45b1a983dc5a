"""Docker misbehaving under a running daemon: calls that hang, fail, and an event too big to read.

Each daemon reaches Docker through the fault-injecting proxy (`docker_proxy.py`), so one call can
hang or fail while the rest of the API works. The tests assert on what results (the containers
Docker holds, `/engines`, `/status`) and count requests at the proxy to show that retries are
bounded by the daemon's own documented back-offs, never by a measured duration.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.state.breaker import CreateBreaker
from orchestrator.workers.executor import COOLDOWN_MAX_S
from testkit.docker_proxy import DockerProxy, Rule
from testkit.harness import (
    ENGINE_IMAGE,
    Daemon,
    docker,
    label_args,
    run_gluetun,
    set_vpn_health,
    wait_for,
    wait_vpn_health,
)
from testkit.rounds import start_vpns

MakeDaemon = Callable[..., Daemon]
CREATE = r"/containers/create$"
INSPECT = r"/containers/[^/]+/json$"
REMOVE = r"/containers/[^/]+$"


def most_create_rounds(window_s: float) -> int:
    """The most rounds of creates the circuit breaker lets start within `window_s` when every
    create fails at once: one failure a round, the slowest its back-off can grow."""
    breaker, at, rounds = CreateBreaker(), 0.0, 0
    while at <= window_s:
        rounds += 1
        breaker.failed(at)
        assert breaker.blocked_until is not None
        at = breaker.blocked_until
    return rounds


def most_remove_attempts(window_s: float) -> int:
    """The most removes of one container the executor's cool-down lets start within `window_s`."""
    at, attempts = 0.0, 0
    while at <= window_s:
        attempts += 1
        at += min(COOLDOWN_MAX_S, 2.0**attempts)
    return attempts


def ids(engines: list[dict[str, Any]]) -> set[str]:
    return {e["container_id"] for e in engines}


def converged(daemon: Daemon, count: int) -> set[str]:
    """`count` engines listed and exactly those containers in Docker (nothing leaked)."""
    return wait_for(
        f"{count} engines listed, no other container of the pool",
        lambda: got if len(got := ids(daemon.engines())) == count and got == set(daemon.managed()) else None,
        timeout=90,
    )


def none_listed(daemon: Daemon) -> None:
    wait_for("no engine listed", lambda: not daemon.engines(), timeout=30)


def recent_errors(daemon: Daemon, action: str) -> list[str]:
    errors = daemon.status()["provisioning"]["recent_errors"]
    return [e["message"] for e in errors if e["action"] == action]


def problem_codes(daemon: Daemon) -> set[str]:
    return {p["code"] for p in daemon.status()["problems"]}


def while_hung(rule: Rule, container: str, probe: Callable[[], bool]) -> Callable[[], bool]:
    """`probe` holds while an inspect of `container` hangs at the proxy. Each call sends it a
    harmless signal first: Docker's `kill` event asks for another inspect, queued behind the
    hung one, so the gateway's timeout never ends the hang."""

    def check() -> bool:
        docker("kill", "-s", "WINCH", container)
        return rule.held > 0 and probe()

    return check


def test_hung_inspect_of_one_engine_holds_up_no_other_event(
    make_daemon: MakeDaemon, vpns: tuple[str, str], docker_proxy: DockerProxy
) -> None:
    a, b = vpns
    start_vpns(vpns)  # healthy, forwarding 40001 and 40002
    daemon = make_daemon(
        env=docker_proxy.env,
        engines={"min_replicas": 4, "max_replicas": 6},
        vpn={"mode": "redundant", "containers": list(vpns), "health_check_interval_s": 0.5},
    )
    listed = daemon.wait_engines(4, timeout=60)
    on_a = sorted(e["container_id"] for e in listed if e["vpn_container"] == a)
    hung, removed = on_a[0], on_a[1]
    rule = docker_proxy.stall("GET", INSPECT, container=hung)
    wait_for("the inspect of one engine hung", while_hung(rule, hung, lambda: True))

    set_vpn_health(b, False)
    wait_for(
        "the unhealthy VPN's engines hidden while the inspect hangs",
        while_hung(rule, hung, lambda: not any(e["vpn_container"] == b for e in daemon.engines())),
        timeout=30,
    )
    docker("rm", "-f", removed)
    wait_for(
        "a new engine on the healthy VPN, the removed one gone, while the inspect hangs",
        while_hung(
            rule, hung, lambda: bool((got := ids(daemon.engines())) - ids(listed)) and removed not in got
        ),
        timeout=60,
    )

    docker_proxy.remove(rule)
    set_vpn_health(b, True)
    after = converged(daemon, 4)
    assert removed not in after  # the hung engine may be the one the scale-down removes


def test_daemon_restarted_while_one_engine_cannot_be_inspected_serves_the_rest(
    make_daemon: MakeDaemon, docker_proxy: DockerProxy
) -> None:
    daemon = make_daemon(env=docker_proxy.env, engines={"min_replicas": 2})
    stuck, other = sorted(ids(daemon.wait_engines(2)))
    rule = docker_proxy.stall("GET", INSPECT, container=stuck)
    daemon.stop(signal.SIGKILL)
    daemon.start()  # its first resync cannot inspect `stuck`
    wait_for(
        "Docker connected and the other engine served while one inspect hangs",
        while_hung(
            rule,
            stuck,
            lambda: daemon.status()["docker"]["connected"] and other in ids(daemon.engines()),
        ),
        timeout=60,
    )
    docker_proxy.remove(rule)
    after = converged(daemon, 2)
    assert other in after


def test_failing_creates_back_off_and_leave_the_pool_serving(
    make_daemon: MakeDaemon, docker_proxy: DockerProxy
) -> None:
    daemon = make_daemon(env=docker_proxy.env, engines={"min_replicas": 2, "max_replicas": 6})
    before = ids(daemon.wait_engines(2))
    rule = docker_proxy.fail("POST", CREATE, message="injected: create refused")
    began = time.monotonic()
    daemon.write_config(engines={"min_replicas": 4})
    wait_for(
        "the breaker open on /status after repeated failures",
        lambda: (
            daemon.status()["provisioning"]["consecutive_failures"] >= 6
            and "circuit_breaker" in problem_codes(daemon)
        ),
        timeout=60,
    )
    window = time.monotonic() - began
    deficit = 2
    assert 0 < rule.hits <= deficit * most_create_rounds(window), (rule.hits, window)
    assert any("injected: create refused" in m for m in recent_errors(daemon, "CreateEngine"))
    assert ids(daemon.engines()) == before  # the engines already there keep serving

    docker_proxy.remove(rule)
    after = converged(daemon, 4)
    assert before < after
    assert daemon.status()["provisioning"]["circuit_breaker_state"] == "closed"


def test_failing_removes_are_retried_after_a_cool_down(
    make_daemon: MakeDaemon, docker_proxy: DockerProxy
) -> None:
    daemon = make_daemon(env=docker_proxy.env, engines={"min_replicas": 3})
    before = ids(daemon.wait_engines(3))
    rule = docker_proxy.fail("DELETE", REMOVE, message="injected: remove refused")
    began = time.monotonic()
    daemon.write_config(engines={"min_replicas": 1})
    wait_for("removes retried", lambda: rule.hits >= 6, timeout=60)
    window = time.monotonic() - began
    assert rule.hits <= len(before) * most_remove_attempts(window), (rule.hits, window)
    assert set(daemon.managed()) == before  # nothing removed, nothing created in its place
    assert any("injected: remove refused" in m for m in recent_errors(daemon, "RemoveEngine"))

    docker_proxy.remove(rule)
    after = converged(daemon, 1)
    assert after < before


def test_event_line_over_a_mebibyte_is_skipped_and_events_go_on(
    make_daemon: MakeDaemon, vpns: tuple[str, str], tmp_path: Path
) -> None:
    vpn = vpns[0]
    run_gluetun(vpn)
    wait_vpn_health(vpn, "healthy")
    daemon = make_daemon(
        engines={"min_replicas": 1},
        vpn={"mode": "single", "containers": [vpn], "health_check_interval_s": 0.5},
    )
    daemon.wait_engines(1, timeout=60)
    # Docker's `create` event carries every label: 1500 labels of 1 kB make a 1.5 MB line. Named
    # after the VPN: Docker matches the daemon's subscription by name as a prefix, so its events
    # reach the daemon (another container's would be filtered out on Docker's side).
    label_file = tmp_path / "labels"
    label_file.write_text("".join(f"bulk.{i:04d}={'x' * 1000}\n" for i in range(1500)))
    big = docker(
        "create",
        *label_args(),
        "--name",
        f"{vpn}-big",
        "--label-file",
        str(label_file),
        "--entrypoint",
        "true",
        ENGINE_IMAGE,
    )
    wait_for("the skipped event logged", lambda: "docker_event_skipped" in daemon.log(), timeout=30)

    set_vpn_health(vpn, False)
    none_listed(daemon)
    set_vpn_health(vpn, True)
    daemon.wait_engines(1, timeout=60)
    docker("rm", "-f", big)
    assert daemon.get("/health")[0] == 200
