"""The YAML file mangled under a running daemon: every bad file is an error, never an outage.

One daemon serves the whole module (its engines are the witnesses): each bad input must leave
the same engine containers serving, show a clear error on `/status` (`config.last_error`) and in
the log, and keep the process alive and `/health` at 200. The good file is then written back,
and a fixed edit at the end must still be applied.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from testkit.harness import Daemon, build_daemon, kill_daemon, remove_test_containers, wait_for

ONE_MIB = 1024 * 1024


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    started = build_daemon(tmp_path_factory.mktemp("yaml-chaos"), engines={"max_replicas": 6}).start()
    started.wait_engines(2)
    yield started
    kill_daemon(started)
    remove_test_containers()


def ids(daemon: Daemon) -> set[str]:
    return {e["container_id"] for e in daemon.engines()}


def last_error(daemon: Daemon) -> dict[str, Any] | None:
    error: dict[str, Any] | None = daemon.status()["config"]["last_error"]
    return error


def rejections(daemon: Daemon) -> int:
    return sum(1 for event in daemon.log_events() if event.get("event") == "config_rejected")


def restore(daemon: Daemon) -> None:
    """Put the good file back, whatever took its place."""
    path = daemon.config_path
    if path.is_dir():
        path.rmdir()
    elif path.exists() or path.is_symlink():
        path.unlink()
    daemon.write_config()
    wait_for("the good file read again", lambda: last_error(daemon) is None, timeout=10)


def good_text(daemon: Daemon) -> str:
    return daemon.config_path.read_text()


def truncated(daemon: Daemon) -> None:
    text = good_text(daemon)
    daemon.write_raw(text[: text.index("image:") + 3])  # cut in the middle of a key


def with_text(text: str) -> Callable[[Daemon], None]:
    def spoil(daemon: Daemon) -> None:
        daemon.write_raw(good_text(daemon) + text)

    return spoil


def alias_bomb(levels: int = 40) -> str:
    lines = ["l0: &l0 [x, x]"] + [f"l{i}: &l{i} [*l{i - 1}, *l{i - 1}]" for i in range(1, levels)]
    return "vpn_bomb_holder:\n" + "".join(f"  {line}\n" for line in lines)


def replaced_by_directory(daemon: Daemon) -> None:
    daemon.config_path.unlink()
    daemon.config_path.mkdir()


def replaced_by_fifo(daemon: Daemon) -> None:
    daemon.config_path.unlink()
    os.mkfifo(daemon.config_path)  # nobody writes: a plain read would block for ever


def not_utf8(daemon: Daemon) -> None:
    daemon.config_path.write_bytes(good_text(daemon).encode() + b"# \xff\xfe\n")


def deleted(daemon: Daemon) -> None:
    daemon.config_path.unlink()


# Root reads a file whatever its mode, so "unreadable" is what even root cannot read as YAML.
BAD_INPUTS: list[tuple[str, Callable[[Daemon], None], str]] = [
    ("deleted", deleted, "cannot read the file"),
    ("truncated_mid_key", truncated, "invalid YAML"),
    ("a_directory", replaced_by_directory, "Is a directory"),
    ("a_fifo", replaced_by_fifo, "not a regular file"),
    ("over_1_mib", with_text("#" * (2 * ONE_MIB) + "\n"), f"at most {ONE_MIB} are read"),
    ("not_utf8", not_utf8, "not UTF-8"),
]


def replace_key(daemon: Daemon, section: str, key: str, value: str) -> None:
    """The good file with the one-line `section.key` set to the raw YAML `value` (added when
    the file does not set it)."""
    lines = good_text(daemon).splitlines()
    start = lines.index(f"{section}:")
    body = [i for i in range(start + 1, len(lines)) if lines[i].startswith("  ")]
    kept = [line for i, line in enumerate(lines) if not (i in body and lines[i].startswith(f"  {key}:"))]
    kept.insert(start + 1, f"  {key}: {value}")
    daemon.write_raw("\n".join(kept) + "\n")


def setting(section: str, key: str, value: str) -> Callable[[Daemon], None]:
    return lambda daemon: replace_key(daemon, section, key, value)


BAD_VALUES: list[tuple[str, Callable[[Daemon], None], str]] = [
    ("min_replicas_1e9", setting("engines", "min_replicas", str(10**9)), "engines.min_replicas"),
    ("string_of_10_mb", setting("engines", "image", "x" * (10 * ONE_MIB)), f"at most {ONE_MIB} are read"),
    ("mode_of_900_kb", setting("vpn", "mode", "x" * 900_000), "vpn.mode"),
    ("idle_ttl_100_years", setting("engines", "idle_ttl_s", str(100 * 365 * 86400)), "engines.idle_ttl_s"),
    ("nested_5000_deep", setting("engines", "env", "[" * 5000 + "]" * 5000), "nested too deeply"),
    ("billion_laughs", with_text(alias_bomb()), "expands to more than"),
]


@pytest.mark.parametrize(
    ("spoil", "says"),
    [(spoil, says) for _, spoil, says in BAD_INPUTS + BAD_VALUES],
    ids=[name for name, _, _ in BAD_INPUTS + BAD_VALUES],
)
def test_bad_file_is_an_error_not_an_outage(
    daemon: Daemon, spoil: Callable[[Daemon], None], says: str
) -> None:
    before, rejected = ids(daemon), rejections(daemon)
    try:
        spoil(daemon)

        # inotify may show a step of the spoiling first (a file removed before a directory takes
        # its place): each step is an error; the last one names what is wrong now
        def saying() -> dict[str, Any] | None:
            got = last_error(daemon)
            return got if got is not None and says in got["message"] else None

        error = wait_for(f"the error on /status saying {says!r}", saying, timeout=15)
        assert says in error["message"], error
        assert daemon.process is not None and daemon.process.poll() is None
        assert daemon.get("/health")[0] == 200
        assert ids(daemon) == before and set(daemon.managed()) == before
        assert rejections(daemon) > rejected
    finally:
        restore(daemon)


def test_a_file_written_in_two_steps_is_read_once_whole(daemon: Daemon) -> None:
    rejected = rejections(daemon)
    text = good_text(daemon).replace("max_replicas: 6", "max_replicas: 7")
    half = len(text) // 2
    with daemon.config_path.open("w") as file:
        file.write(text[:half])
        file.flush()
        time.sleep(0.1)  # under one poll of the watcher: a settled file is the same two polls in a row
        file.write(text[half:])
    wait_for("the edit applied", lambda: daemon.status()["desired"]["max_replicas"] == 7, timeout=10)
    assert last_error(daemon) is None and rejections(daemon) == rejected
    restore(daemon)


def test_a_fixed_file_is_applied_after_the_bad_ones(daemon: Daemon) -> None:
    before = ids(daemon)
    daemon.write_config(engines={"min_replicas": 3})
    after = {e["container_id"] for e in daemon.wait_engines(3, timeout=30)}
    assert before < after and set(daemon.managed()) == after
    assert last_error(daemon) is None
