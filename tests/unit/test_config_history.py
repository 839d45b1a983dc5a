"""Configuration edits in the history, as the daemon wires its watcher: applied, rejected (with
the file and the line), held (with what it waits for)."""

from __future__ import annotations

import os
from pathlib import Path

from orchestrator.config import parse_config
from orchestrator.daemon import Daemon

BASE = "engines: {image: engine:1, launch: {preset: acestream-http-proxy}, pool: main, min_replicas: 2}\n"


def edit(path: Path, text: str) -> None:
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def settle(daemon: Daemon) -> None:
    daemon.watcher.check()
    daemon.watcher.check()


async def test_config_edits_are_in_the_history(tmp_path: Path) -> None:
    path = tmp_path / "orchestrator.yaml"
    path.write_text(BASE)
    daemon = Daemon(parse_config(BASE, source=str(path), env={}), path, state_dir=tmp_path / "state")
    try:
        await edits(daemon, path)
    finally:
        await daemon.gateway.close()


async def edits(daemon: Daemon, path: Path) -> None:
    edit(path, BASE.replace("min_replicas: 2", "min_replicas: 3"))
    settle(daemon)
    edit(path, BASE + "engines: [broken\n")
    settle(daemon)
    edit(path, BASE + "vpn: {mode: single, containers: [gluetn]}\n")
    settle(daemon)

    entries = daemon.store.history.select()
    assert [e.kind for e in entries] == ["config_applied", "config_rejected", "config_held"]
    applied, rejected, held = entries
    assert applied.target == str(path) and applied.trigger == f"{path} changed"
    assert str(path) in rejected.target and "line" in rejected.target
    assert rejected.outcome == "the last good configuration stays in force"
    assert "gluetn" in held.reason
