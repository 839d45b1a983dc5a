"""What a valid edit changes at once in the running daemon (without Docker: the daemon's parts are
built, never run)."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog

from orchestrator.config import parse_config
from orchestrator.daemon import Daemon
from orchestrator.logs import configure_logging

BASE = "engines: {min_replicas: 0}\nlog_level: INFO\n"


async def test_an_edit_of_log_level_applies_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = structlog.get_config()
    configure_logging("INFO", console=False)  # to the captured stderr, as the daemon logs
    daemon = Daemon(parse_config(BASE, source="c.yaml", env={}), state_dir=tmp_path)
    try:
        structlog.get_logger().debug("before_the_edit")
        assert daemon.watcher.apply(parse_config(BASE.replace("INFO", "DEBUG"), source="c.yaml", env={}))
        structlog.get_logger().debug("after_the_edit")
    finally:
        daemon.journal.close()
        await daemon.gateway.close()
        structlog.configure(**saved)
    logged = capsys.readouterr().err
    assert "before_the_edit" not in logged
    assert "after_the_edit" in logged


async def test_the_state_dir_given_on_the_command_line_wins_over_the_files(tmp_path: Path) -> None:
    in_file, given = tmp_path / "from-the-file", tmp_path / "from-the-command-line"
    config = parse_config(BASE + f"state_dir: {in_file}\n", source="c.yaml", env={})
    daemon = Daemon(config, state_dir=given)
    try:
        assert daemon.journal.path is not None and daemon.journal.path.parent == given
    finally:
        daemon.journal.close()
        await daemon.gateway.close()
