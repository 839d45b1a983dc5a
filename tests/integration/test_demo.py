"""The README's first command, `make demo`, does what it says: the daemon on the local Docker
engine with stand-in Gluetun and engine containers, engines listed on /engines, no VPN account;
Ctrl-C stops the daemon and leaves the engines running.

Runs `scripts/demo.sh MODE` as `make demo MODE=...` does, for each mode (`none`, the README's
plain `make demo`, included; the venv and images are there already in `make test`), on a free
port, then stops it and removes what it made, as `make clean` does."""

from __future__ import annotations

import os
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from reconcilers.model import POOL
from testkit.harness import REPO, containers, free_port, http_json, wait_for

DEMO_LABEL = "acestream-orchestrator-demo=1"


GLUETUNS = {"none": set(), "single": {"demo-gluetun-1"}, "redundant": {"demo-gluetun-1", "demo-gluetun-2"}}


@pytest.mark.parametrize("mode", ["none", "single", "redundant"])
def test_make_demo_runs_the_daemon_with_stand_ins_and_lists_engines(tmp_path: Path, mode: str) -> None:
    port = free_port()
    log = (tmp_path / "demo.log").open("wb")
    demo = subprocess.Popen(
        ["bash", "scripts/demo.sh", mode],
        cwd=REPO,
        env={**os.environ, "DEMO_PORT": str(port)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        def four_listed() -> list[dict[str, Any]] | None:
            if demo.poll() is not None:
                raise AssertionError(
                    f"the demo exited ({demo.returncode}):\n{(tmp_path / 'demo.log').read_text()}"
                )
            try:
                status, body = http_json(f"http://127.0.0.1:{port}/engines")
            except OSError:
                return None  # not listening yet
            return body if status == 200 and len(body) == 4 else None

        gluetuns = GLUETUNS[mode]
        engines = wait_for("the demo's 4 engines on /engines", four_listed, timeout=120)
        expected: set[str | None] = set(gluetuns) or {None}
        assert {e["vpn_container"] for e in engines} == expected
        assert sum(e["forwarded"] for e in engines) == len(gluetuns)  # one forwarded port each
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
            status, page = resp.status, resp.read().decode()
        assert status == 200 and all(g in page for g in gluetuns), "the status page shows the VPNs"
        # made from the stand-in images (labelled acestream-orchestrator-test=1), the demo's
        # containers say they are a tool's, or a test suite's clean-up would take them for its own
        made = set(containers(f"label={DEMO_LABEL}"))
        assert len(made) >= 4 + len(gluetuns), made  # the Gluetun stand-ins and the 4 engines
        assert set(containers(f"label={DEMO_LABEL}", "label=acestream-orchestrator-test=dev")) == made
        # a pool of its own: a stack on this host, on the default pool, is not the demo's to manage
        # (nor the demo's engines that stack's)
        assert {e["container_id"] for e in engines} <= set(containers(f"label={POOL}=demo"))
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C: the daemon stops, the engines keep running
        demo.wait(timeout=30)
        assert demo.returncode == 0, (tmp_path / "demo.log").read_text()
        assert set(containers(f"label={DEMO_LABEL}", "status=running")) == made
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGTERM)
            demo.wait(timeout=30)
        log.close()
        subprocess.run(["bash", "testbed/cleanup.sh", DEMO_LABEL], cwd=REPO, check=False, timeout=120)
    assert containers(f"label={DEMO_LABEL}") == [], "make clean's clean-up leaves nothing"
