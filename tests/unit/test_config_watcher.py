"""The config watcher on a real file: what goes in force, what is refused, what waits."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from orchestrator.config import CONTAINER_NAME_VARS, ENV_OVERRIDES, Config, load_config, parse_config
from orchestrator.config.watcher import ConfigWatcher
from testkit.logs import logged

BASE = "engines: {image: engine:1, launch: {preset: acestream-http-proxy}, pool: main, min_replicas: 2}\n"


def edit(path: Path, text: str) -> None:
    """Write the file so the watcher sees a change even within one clock tick."""
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def settle(watcher: ConfigWatcher) -> None:
    """Two looks a poll apart: a change is read once it has settled."""
    watcher.check()
    watcher.check()


def watching(tmp_path: Path, text: str = BASE, **kw: object) -> tuple[ConfigWatcher, Path, list[Config]]:
    path = tmp_path / "orchestrator.yaml"
    path.write_text(text)
    applied: list[Config] = []
    watcher = ConfigWatcher(
        parse_config(text, source=str(path), env={}),
        path,
        on_change=lambda previous, config: applied.append(config),
        **kw,  # type: ignore[arg-type]
    )
    return watcher, path, applied


def test_a_refused_pool_rename_stays_refused_through_later_edits_and_its_undo(tmp_path: Path) -> None:
    watcher, path, applied = watching(tmp_path)

    edit(path, BASE.replace("pool: main", "pool: other"))
    settle(watcher)
    assert watcher.current.desired.engines.pool == "main" and applied == []

    edit(path, BASE.replace("pool: main", "pool: other").replace("min_replicas: 2", "min_replicas: 3"))
    settle(watcher)  # an unrelated edit: applied, the rename still refused
    assert watcher.current.desired.engines.min_replicas == 3
    assert watcher.current.desired.engines.pool == "main"

    edit(path, BASE.replace("min_replicas: 2", "min_replicas: 3"))
    settle(watcher)  # the rename undone: nothing to apply
    assert watcher.current.desired.engines.pool == "main"
    assert [c.desired.engines.pool for c in applied] == ["main"]


@dataclass(frozen=True)
class RestartOnly:
    keys: str  # as the warning names them
    before: str  # the file in force
    after: str  # the file asking for another value
    kept: str  # the value in force, as the warning quotes it
    hint: str


RESTART_ONLY = [
    RestartOnly("engines.pool", BASE, BASE.replace("pool: main", "pool: other"), "main", "orphans"),
    RestartOnly(
        "api.host, api.port",
        BASE + "api: {host: 127.0.0.1, port: 8100}\n",
        BASE + "api: {host: 127.0.0.1, port: 8101}\n",
        "127.0.0.1:8100",
        "restart the daemon",
    ),
    RestartOnly(
        "state_dir",
        BASE + "state_dir: /var/lib/a\n",
        BASE + "state_dir: /var/lib/b\n",
        "/var/lib/a",
        "journal",
    ),
]


@pytest.mark.parametrize("row", RESTART_ONLY, ids=lambda r: r.keys.split(",")[-1].strip())
def test_a_restart_only_key_logs_config_needs_restart_at_every_edit_until_undone(
    tmp_path: Path, row: RestartOnly
) -> None:
    """docs/configuration.md: such a key keeps its value in force until a restart, "with a
    `config_needs_restart` warning, however many edits follow"."""
    watcher, path, _ = watching(tmp_path, row.before)

    with capture_logs() as logs:
        edit(path, row.after)
        settle(watcher)
        edit(path, row.after.replace("min_replicas: 2", "min_replicas: 3"))  # an unrelated edit
        settle(watcher)
        edit(path, row.before.replace("min_replicas: 2", "min_replicas: 3"))  # the change undone
        settle(watcher)

    warned = logged(logs, "config_needs_restart")
    assert len(warned) == 2  # both edits that still ask for it, not the undo
    for entry in warned:
        assert entry["log_level"] == "warning"
        assert (entry["keys"], entry["kept"]) == (row.keys, row.kept)
        assert row.hint in str(entry["hint"]) and "restart" in str(entry["hint"])
    assert watcher.current.desired.engines.min_replicas == 3


def test_state_dir_changes_wait_for_a_restart(tmp_path: Path) -> None:
    watcher, path, _ = watching(tmp_path, BASE + "state_dir: /var/lib/a\n")
    edit(path, BASE + "state_dir: /var/lib/b\nlog_level: DEBUG\n")
    settle(watcher)
    assert watcher.current.log_level == "DEBUG"
    assert watcher.current.state_dir == Path("/var/lib/a")


def test_an_edit_naming_a_vpn_that_does_not_exist_waits_for_it(tmp_path: Path) -> None:
    vpns = "vpn: {mode: single, containers: [NAME]}\n"
    existing: set[str] = {"gluetun"}
    held: list[Config] = []

    def hold(current: Config, wanted: Config) -> str | None:
        missing = [n for n in wanted.desired.vpn.containers if n not in existing]
        return f"no container {missing}" if missing else None

    watcher, path, applied = watching(
        tmp_path, BASE + vpns.replace("NAME", "gluetun"), hold=hold, on_held=held.append
    )

    edit(path, BASE + vpns.replace("NAME", "gluetn"))  # the typo
    settle(watcher)
    assert watcher.current.desired.vpn.containers == ("gluetun",)
    assert watcher.held is not None and "gluetn" in watcher.held
    assert watcher.wanted.desired.vpn.containers == ("gluetn",)
    assert [c.desired.vpn.containers for c in held] == [("gluetn",)] and applied == []
    assert watcher.recheck() is False  # nothing changed in the world

    existing.add("gluetn")  # the operator creates it after all
    assert watcher.recheck() is True
    assert watcher.current.desired.vpn.containers == ("gluetn",) and watcher.held is None


def test_a_held_edit_is_dropped_when_the_file_goes_back(tmp_path: Path) -> None:
    good = BASE + "vpn: {mode: single, containers: [gluetun]}\n"
    watcher, path, applied = watching(
        tmp_path,
        good,
        hold=lambda current, wanted: "missing" if "typo" in wanted.desired.vpn.containers else None,
    )
    edit(path, good.replace("gluetun", "typo"))
    settle(watcher)
    assert watcher.held == "missing"
    edit(path, good)
    settle(watcher)
    assert watcher.held is None and applied == [] and watcher.wanted == watcher.current


def test_a_change_is_read_only_once_it_has_settled_and_an_empty_file_is_an_error(tmp_path: Path) -> None:
    watcher, path, applied = watching(tmp_path)
    edit(path, BASE.replace("min_replicas: 2", "min_replicas: 5"))
    watcher.check()
    assert applied == []  # just changed: maybe still being written
    watcher.check()
    assert watcher.current.desired.engines.min_replicas == 5

    edit(path, "")  # an editor truncated it and has not written yet
    settle(watcher)
    assert watcher.error is not None and "empty" in str(watcher.error)
    assert watcher.current.desired.engines.min_replicas == 5

    edit(path, "{}\n")  # said on purpose: every key at its default (the pool stays: set at start)
    settle(watcher)
    assert watcher.error is None and watcher.current.desired.engines.min_replicas == 3


def test_a_deleted_file_keeps_the_config_and_its_return_applies(tmp_path: Path) -> None:
    watcher, path, _ = watching(tmp_path)
    path.unlink()
    settle(watcher)
    assert watcher.error is not None and "cannot read" in str(watcher.error)
    edit(path, BASE.replace("min_replicas: 2", "min_replicas: 4"))
    settle(watcher)
    assert watcher.error is None and watcher.current.desired.engines.min_replicas == 4


def test_moving_to_loopback_and_dropping_the_key_in_one_edit_keeps_the_key_until_the_restart(
    tmp_path: Path,
) -> None:
    """api.host applies only at a restart: an edit to 127.0.0.1 without the key would leave the
    API in force on 0.0.0.0 with no key at all, so it is refused whole."""
    exposed = BASE + "api: {host: 0.0.0.0, api_key: s3cret}\n"
    watcher, path, applied = watching(tmp_path, exposed)

    edit(path, BASE + "api: {host: 127.0.0.1}\nlog_level: DEBUG\n")
    settle(watcher)
    assert watcher.current.api.api_key == "s3cret" and watcher.current.api.host == "0.0.0.0"
    assert watcher.current.log_level == "INFO" and applied == []
    assert watcher.error is not None and watcher.error.key == "api.api_key"

    edit(path, BASE + "api: {host: 127.0.0.1, api_key: s3cret}\nlog_level: DEBUG\n")
    settle(watcher)  # the key kept: applied, the address waits for the restart
    assert watcher.error is None and watcher.current.log_level == "DEBUG"
    assert watcher.current.api.host == "0.0.0.0" and watcher.current.api.api_key == "s3cret"


def test_a_set_variable_wins_over_the_file_on_every_reload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/configuration.md: a variable that is set wins over the file, also on every reload.
    The watcher reads the process environment each time it loads the file."""
    for var in (*ENV_OVERRIDES, *CONTAINER_NAME_VARS):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ORCHESTRATOR_API_KEY", "key-from-env")
    monkeypatch.setenv("MAX_ACTIVE_REPLICAS", "7")
    text = BASE + "api: {api_key: key-from-file}\nlog_level: INFO\n"
    path = tmp_path / "orchestrator.yaml"
    path.write_text(text)
    applied: list[Config] = []
    watcher = ConfigWatcher(
        load_config(path), path, on_change=lambda previous, config: applied.append(config)
    )
    assert watcher.current.api.api_key == "key-from-env"

    for replicas, level in ((3, "DEBUG"), (4, "ERROR")):
        edit(
            path,
            BASE.replace("min_replicas: 2", f"min_replicas: {replicas}, max_replicas: 5")
            + f"api: {{api_key: edited-{replicas}}}\nlog_level: {level}\n",
        )
        settle(watcher)
        assert watcher.error is None, watcher.error
        assert watcher.current.desired.engines.min_replicas == replicas  # the edit applies
        assert watcher.current.log_level == level
        assert watcher.current.api.api_key == "key-from-env"  # the variable's, not the file's
        assert watcher.current.desired.engines.max_replicas == 7
    assert len(applied) == 2


async def test_an_edit_is_seen_through_inotify_without_polling(tmp_path: Path) -> None:
    """The safety poll is an hour away: only an inotify event can bring the edit in."""
    seen = asyncio.Event()
    watcher, path, _ = watching(tmp_path)
    watcher._on_change = lambda previous, config: seen.set()
    task = asyncio.create_task(watcher.run(safety_poll_s=3600))
    try:
        await asyncio.sleep(0.1)  # the watch is in place
        replaced = tmp_path / "new.yaml"
        replaced.write_text(BASE.replace("min_replicas: 2", "min_replicas: 4"))
        replaced.replace(path)  # an editor's atomic save: a rename over the file
        async with asyncio.timeout(10):
            await seen.wait()
        assert watcher.current.desired.engines.min_replicas == 4
    finally:
        task.cancel()
