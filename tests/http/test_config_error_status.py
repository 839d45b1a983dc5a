"""A refused reload on `GET /status` (`config.last_error`, an open read) and on the status page:
the key at fault and what is wrong with it, never the value of a key or password."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.api.app import make_app
from orchestrator.api.context import ApiContext
from orchestrator.config import CONTAINER_NAME_VARS, ENV_OVERRIDES, parse_config
from orchestrator.config.schema import SECRET_KEYS
from orchestrator.config.watcher import ConfigWatcher
from orchestrator.state.store import StateStore
from tests.http.conftest import NO_VPN

DIGITS = "73519024867"
WORD = "hunter2sesame"
WRONG = {
    "number": DIGITS,
    "list": f"[{DIGITS}, {WORD}]",
    "mapping": f"{{user: {WORD}, password: {DIGITS}}}",
}


@pytest.mark.parametrize("kind", sorted(WRONG))
@pytest.mark.parametrize("key", sorted(SECRET_KEYS))
async def test_a_refused_secret_is_not_shown(
    aiohttp_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, kind: str
) -> None:
    for var in (*ENV_OVERRIDES, *CONTAINER_NAME_VARS):
        monkeypatch.delenv(var, raising=False)  # the watcher reads the process environment
    path = tmp_path / "orchestrator.yaml"
    path.write_text(NO_VPN)
    watcher = ConfigWatcher(parse_config(NO_VPN, source=str(path), env={}), path)
    store = StateStore(restart_on_reconnect=lambda: True)
    store.telemetry.set_docker(connected=True)
    ctx = ApiContext(store=store, watcher=watcher, started_at=time.time())
    client = await aiohttp_client(make_app(ctx))

    section, name = key.split(".")
    path.write_text(NO_VPN + f"{section}:\n  {name}: {WRONG[kind]}\n")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    watcher.check()
    watcher.check()  # settled: read, and refused

    resp = await client.get("/status")
    assert resp.status == 200
    text = await resp.text()
    error = (await resp.json())["config"]["last_error"]
    assert error["key"] == key and error["line"] == 3
    assert error["message"].startswith(f"{path}:3: {key}: expected a non-empty string, got ")
    page = await (await client.get("/")).text()
    assert "Configuration edit rejected" in page
    for shown in (text, page):
        assert DIGITS not in shown and WORD not in shown
