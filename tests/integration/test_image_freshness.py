"""engines.pull against a real registry: Debian's `docker-registry` (the Distribution registry)
on loopback, a stand-in engine image pushed to it, then a new image (the stand-in with another
label: a new digest) pushed under the same tag. With `engines.pull: periodic` the pool rolls to
it through the safe rollout; a registry that is down costs nothing but a problem on /status.
The time from the push to the whole pool rolled is printed (`-s`)."""

from __future__ import annotations

import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from testkit.harness import ENGINE_IMAGE, Daemon, docker, free_port, inspect, wait_for
from testkit.packages import ensure_package

MakeDaemon = Callable[..., Daemon]
REPO_NAME = "standin-engine"


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """`127.0.0.1:<port>`: a registry of this test's own, its storage in a temporary directory."""
    ensure_package("docker-registry", "docker-registry")
    port = free_port()
    (tmp_path / "storage").mkdir()
    config = tmp_path / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {tmp_path / 'storage'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
    )
    with (tmp_path / "registry.log").open("wb") as log:
        process = subprocess.Popen(
            ["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    address = f"127.0.0.1:{port}"
    try:
        wait_for("the registry answers", lambda: _answers(f"http://{address}/v2/"), timeout=20)
        yield address
    finally:
        process.terminate()
        process.wait(timeout=10)
        for ref in docker(
            "images", "--format", "{{.Repository}}:{{.Tag}}", f"{address}/{REPO_NAME}"
        ).splitlines():
            docker("rmi", ref, check=False)


def engine_images(daemon: Daemon) -> list[str]:
    return [(inspect(c) or {}).get("Image", "") for c in daemon.managed(running_only=True)]


def build_new_digest(tag: str) -> str:
    """The stand-in engine with one more label, built (legacy builder: FROM resolves locally)
    and tagged `tag`; returns its image ID."""
    dockerfile = f"FROM {ENGINE_IMAGE}\nLABEL acestream-orchestrator-test.freshness={uuid.uuid4().hex}\n"
    docker("build", "-q", "-t", tag, "-", input_text=dockerfile, env={"DOCKER_BUILDKIT": "0"}, timeout=120)
    return docker("image", "inspect", "-f", "{{.Id}}", tag)


def test_a_new_digest_under_the_same_tag_rolls_the_pool(make_daemon: MakeDaemon, registry: str) -> None:
    tag = f"{registry}/{REPO_NAME}:stable"
    docker("tag", ENGINE_IMAGE, tag)
    old = docker("image", "inspect", "-f", "{{.Id}}", tag)
    docker("push", "-q", tag, timeout=120)
    # periodic pulls only once the new digest is pushed: a pull while the test builds and pushes
    # it puts the local tag back on the old image, and the push then sends the old one
    daemon = make_daemon(
        engines={
            "image": tag,
            "min_replicas": 2,
            "pull": "periodic",
            "pull_interval_s": 3600,
            "idle_ttl_s": 0,
        }
    )
    daemon.wait_engines(2, timeout=60)
    assert set(engine_images(daemon)) == {old}
    # engines start from the local image without waiting for the first pull to answer
    wait_for("the first pull's image on /status", lambda: daemon.status()["desired"]["image_id"] == old)

    new = build_new_digest(tag)
    assert new != old
    docker("push", "-q", tag, timeout=120)
    docker("tag", old, tag)  # the local tag back on the old image: only a pull can find the new one
    pushed = time.monotonic()
    daemon.write_config(engines={"pull_interval_s": 2})  # a pull is due now, then every 2 s
    wait_for(
        "the whole pool on the new digest",
        lambda: (engine_images(daemon) == [new, new] and len(daemon.engines()) == 2) or None,
        timeout=120,
    )
    rolled = time.monotonic() - pushed
    assert all(e["ready"] for e in daemon.engines())
    assert daemon.status()["desired"]["image_id"] == new
    assert [e for e in daemon.log_events() if e.get("event") == "engine_image_updated"]
    print(f"\nnew digest pushed -> whole pool (2 engines) rolled in {rolled:.1f}s (pull_interval_s=2)")


def test_a_registry_that_is_down_costs_nothing(make_daemon: MakeDaemon) -> None:
    tag = f"127.0.0.1:{free_port()}/{REPO_NAME}:stable"  # nothing listens there
    docker("tag", ENGINE_IMAGE, tag)
    try:
        daemon = make_daemon(
            engines={"image": tag, "min_replicas": 2, "pull": "periodic", "pull_interval_s": 1}
        )
        engines = daemon.wait_engines(2, timeout=60)  # created from the image that is there
        wait_for(
            "image_pull_failed on /status",
            lambda: [p for p in daemon.status()["problems"] if p["code"] == "image_pull_failed"] or None,
            timeout=30,
        )
        time.sleep(4)  # a few more failed pulls
        assert {e["container_id"] for e in daemon.engines()} == {e["container_id"] for e in engines}
        assert len(daemon.managed()) == 2
        failures = [e for e in daemon.log_events() if e.get("event") == "engine_image_pull_failed"]
        assert len(failures) == 1, failures  # logged once
    finally:
        docker("rmi", tag, check=False)
