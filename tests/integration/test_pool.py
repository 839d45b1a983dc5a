"""The engine pool without a VPN, end to end on the real Docker engine."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from testkit.harness import (
    REPO,
    Daemon,
    docker,
    engine_info,
    host_port_band,
    inspect,
    started_at,
    stream_started,
    wait_for,
)

MakeDaemon = Callable[..., Daemon]
READY_FLAG = "/tmp/standin/ready"  # the engine stand-in answers its API while this exists


def test_engines_appear_ready_and_reachable(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(engines={"min_replicas": 3})
    listed = daemon.wait_engines(3)
    assert len({e["container_id"] for e in listed}) == 3
    ports = {e["host_http_port"] for e in listed}
    lo, hi = host_port_band()
    assert len(ports) == 3 and all(lo <= p <= hi for p in ports)
    for engine in listed:
        info = engine_info(engine["host"], engine["port"])
        assert info is not None and info["CONTAINER_ID"] == engine["container_id"]
        assert engine["labels"]["orchestrator.managed"] == "acestream"
        assert engine["health_status"] == "healthy" and engine["vpn_container"] is None
        assert engine["first_seen"].endswith("+00:00") and engine["forwarded"] is False
        # the published host port reaches the same container
        published = engine_info("127.0.0.1", engine["host_http_port"]) or {}
        assert published.get("CONTAINER_ID") == engine["container_id"]
    assert sorted(daemon.managed()) == sorted(e["container_id"] for e in listed)
    status, body = daemon.get(f"/engines/{listed[0]['container_id']}")
    assert status == 200 and body["container_id"] == listed[0]["container_id"]
    status, body = daemon.get("/engines/does-not-exist")
    assert status == 404 and body["error"] == "engine_not_found"
    status, body = daemon.get("/no/such/route")
    assert status == 404 and body["error"] == "not_found"


def test_removed_engine_is_replaced(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(engines={"min_replicas": 2})
    first = {e["container_id"] for e in daemon.wait_engines(2)}
    victim = sorted(first)[0]
    docker("rm", "-f", victim)
    after = wait_for(
        "a replacement engine",
        lambda: (
            ids
            if len(ids := {e["container_id"] for e in daemon.engines()}) == 2 and victim not in ids
            else None
        ),
    )
    assert victim not in after and len(after & first) == 1
    assert len(daemon.managed()) == 2


def test_exited_engine_is_replaced(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(engines={"min_replicas": 2})
    victim = daemon.wait_engines(2)[0]["container_id"]
    docker("kill", victim)
    wait_for(
        "the exited engine replaced and removed",
        lambda: len(daemon.engines()) == 2 and inspect(victim) is None and len(daemon.managed()) == 2,
    )


def test_yaml_edit_scales_up_and_down(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(engines={"min_replicas": 1})
    daemon.wait_engines(1)
    daemon.write_config(engines={"min_replicas": 4})
    daemon.wait_engines(4, timeout=20)
    daemon.write_config(engines={"min_replicas": 2})
    daemon.wait_engines(2, timeout=20)
    wait_for("containers removed", lambda: len(daemon.managed()) == 2)


def test_invalid_edit_changes_nothing(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(engines={"min_replicas": 2})
    before = {e["container_id"] for e in daemon.wait_engines(2)}
    good = daemon.config_path.read_text()
    daemon.write_raw(good.replace("min_replicas: 2", "min_replicas: lots"))
    error = wait_for("config error on /status", lambda: daemon.status()["config"]["last_error"])
    assert error["key"] == "engines.min_replicas" and error["line"] is not None
    assert str(daemon.config_path) in error["message"]
    daemon.write_raw("engines: [unclosed\n")
    wait_for(
        "YAML syntax error on /status",
        lambda: "invalid YAML" in ((daemon.status()["config"]["last_error"] or {}).get("message", "")),
    )
    assert {e["container_id"] for e in daemon.engines()} == before
    assert sorted(daemon.managed()) == sorted(before)
    assert any(ev.get("event") == "config_rejected" for ev in daemon.log_events())
    daemon.write_raw(good.replace("min_replicas: 2", "min_replicas: 3"))
    daemon.wait_engines(3)
    assert daemon.status()["config"]["last_error"] is None


def test_sigkill_and_restart_adopts_without_duplicates(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(engines={"min_replicas": 3})
    before = {e["container_id"] for e in daemon.wait_engines(3)}
    daemon.stop(signal.SIGKILL)
    seen = len(daemon.log_events())
    daemon.start()
    after = {e["container_id"] for e in daemon.wait_engines(3)}
    assert after == before
    assert sorted(daemon.managed()) == sorted(before)
    new_events = [ev.get("event") for ev in daemon.log_events()[seen:]]
    assert "daemon_starting" in new_events
    assert "engine_created" not in new_events and "engine_removed" not in new_events


def test_sigterm_is_quick_and_leaves_engines_running(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(engines={"min_replicas": 2})
    ids = {e["container_id"] for e in daemon.wait_engines(2)}
    took = daemon.stop(signal.SIGTERM)
    assert daemon.process is not None and daemon.process.returncode == 0
    assert took < 3.0, f"SIGTERM took {took:.2f}s"
    assert set(daemon.managed(running_only=True)) == ids


def test_unknown_image_is_reported_and_leaks_nothing(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(engines={"min_replicas": 1, "image": "acestream-orchestrator-test/nope:missing"})
    status = wait_for(
        "a provisioning error on /status",
        lambda: s if (s := daemon.status())["provisioning"]["recent_errors"] else None,
    )
    error = status["provisioning"]["recent_errors"][-1]
    assert "nope:missing" in error["message"] and error["action"] == "CreateEngine"
    wait_for(
        "breaker open",
        lambda: daemon.status()["provisioning"]["circuit_breaker_state"] != "closed",
        timeout=20,
    )
    assert daemon.managed() == [] and daemon.engines() == []
    assert daemon.process is not None and daemon.process.poll() is None


def test_bad_config_at_startup_exits_nonzero(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("engines:\n  min_replicas: 5\n  max_replicas: 2\n")
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "--config", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert f"{path}:2: engines.min_replicas" in done.stderr


@pytest.mark.alone  # every container on the engine stops: `make alone` runs it after the suites
@pytest.mark.skipif(
    not Path("/var/run/acestream-orchestrator-dockerd.pid").exists(),
    reason="needs the dockerd started by scripts/ensure-docker.sh",
)
def test_survives_dockerd_restart(make_daemon: MakeDaemon) -> None:
    # ports of its own: a docker-proxy that outlives the restart must not trouble other tests
    daemon = make_daemon(engines={"min_replicas": 2, "host_port_range": "19900-19949"})
    daemon.wait_engines(2)
    subprocess.run(["bash", str(REPO / "scripts/ensure-docker.sh"), "restart"], check=True, timeout=120)
    # dockerd stopped the engines on the way down (no restart policy): the daemon notices,
    # reconnects its event stream, removes the dead engines and provisions new ones.
    wait_for(
        "2 running engines after dockerd restart",
        lambda: len(daemon.engines()) == 2 and len(daemon.managed(running_only=True)) == 2,
        timeout=60,
    )
    wait_for("dead engines cleaned up", lambda: len(daemon.managed()) == 2, timeout=30)
    assert daemon.status()["docker"]["connected"] is True
    assert daemon.process is not None and daemon.process.poll() is None


def test_engine_that_stops_answering_is_hidden_until_it_answers_again(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(engines={"min_replicas": 2, "health_check_interval_s": 0.5})
    listed = daemon.wait_engines(2)
    victim = listed[0]["container_id"]
    docker("exec", victim, "rm", READY_FLAG)  # the API stops answering; no Docker event
    wait_for(
        "the silent engine hidden",
        lambda: [e["container_id"] for e in daemon.engines()] == [listed[1]["container_id"]],
        timeout=15,
    )
    assert victim in daemon.managed(running_only=True)
    docker("exec", victim, "touch", READY_FLAG)
    wait_for(
        "the engine listed again", lambda: victim in {e["container_id"] for e in daemon.engines()}, timeout=15
    )


def test_unreachable_docker_socket_is_reported_not_fatal(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(env={"DOCKER_HOST": "unix:///run/no-such-docker.sock"})
    status = wait_for(
        "a Docker error on /status", lambda: s if (s := daemon.status())["docker"]["error"] else None
    )
    assert status["docker"]["connected"] is False
    assert "no-such-docker.sock" in status["docker"]["error"]
    assert any(ev.get("event") == "docker_unreachable" for ev in daemon.log_events())
    assert daemon.engines() == [] and daemon.get("/health")[0] == 200
    assert daemon.process is not None and daemon.process.poll() is None


def test_hung_engine_is_restarted_after_ready_timeout(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(
        engines={"min_replicas": 1, "min_free": 0, "health_check_interval_s": 0.5, "ready_timeout_s": 2}
    )
    (engine,) = daemon.wait_engines(1)
    before = started_at(engine["container_id"])
    docker("exec", engine["container_id"], "rm", READY_FLAG)  # stops answering, no event
    wait_for("the hung engine hidden", lambda: daemon.engines() == [], timeout=15)
    # restarted in place (the stand-in's restart brings its API back), listed again
    (back,) = daemon.wait_engines(1, timeout=20)
    assert back["container_id"] == engine["container_id"]
    assert started_at(back["container_id"]) > before
    assert any(ev.get("event") == "engine_restarted" for ev in daemon.log_events())


def test_host_port_in_use_elsewhere_is_skipped(make_daemon: MakeDaemon) -> None:
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lo, hi = host_port_band()
        squatter.bind(("0.0.0.0", lo))
        squatter.listen()
        daemon = make_daemon(engines={"min_replicas": 2, "min_free": 0})
        listed = daemon.wait_engines(2, timeout=30)
        ports = {e["host_http_port"] for e in listed}
        assert len(ports) == 2 and lo not in ports and all(lo + 1 <= p <= hi for p in ports)
        errors = daemon.status()["provisioning"]["recent_errors"]
        assert any(
            str(lo) in e["message"] or "allocated" in e["message"] or "in use" in e["message"] for e in errors
        ), errors
        assert len(daemon.managed()) == 2  # the container that could not start was removed


def test_an_engine_picked_while_it_leaves_the_pool_keeps_its_viewer(make_daemon: MakeDaemon) -> None:
    """The pool shrinks by one; the engine leaving it is hidden first and removed only after
    the retire grace. A proxy that picked it from a listing taken just before (acexy keeps one
    for 2 s) reports its stream inside the grace: that engine stays, its container untouched, and
    the other one leaves instead."""
    daemon = make_daemon(engines={"min_replicas": 2, "min_free": 0})
    listed = {e["container_id"]: e for e in daemon.wait_engines(2)}
    started = {cid: started_at(cid) for cid in listed}
    daemon.write_config(engines={"min_replicas": 1})
    shown = wait_for(
        "one engine hidden", lambda: s if len(s := daemon.engines()) == 1 else None, timeout=15, interval=0.05
    )
    (retired_id,) = set(listed) - {shown[0]["container_id"]}
    retired = listed[retired_id]
    code, body = stream_started(daemon, retired["host"], retired["port"], "picked-late")
    assert code == 200, body
    wait_for(
        "the removal called off",
        lambda: any(
            e["outcome"].startswith("cancelled") and e["engine"] == retired["container_name"]
            for e in daemon.get("/history")[1]["entries"]
        ),
        timeout=15,
    )
    wait_for("the idle engine retired instead", lambda: set(daemon.managed()) == {retired_id}, timeout=30)
    assert started_at(retired_id) == started[retired_id]  # never restarted
    assert [e["container_id"] for e in daemon.engines()] == [retired_id]
    (stream,) = daemon.get("/streams?status=started")[1]
    assert stream["container_id"] == retired_id
