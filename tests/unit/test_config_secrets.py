"""A key or password the loader refuses is described, never quoted (docs/security.md: the daemon
does not log the keys). A key written as a YAML number (`api.api_key: 73519024867`), a list or a
mapping used to be refused with a message quoting it, and that message is logged by the watcher,
shown on `GET /status` (tests/http/test_config_error_status.py), kept in the persisted history,
and printed at start-up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from orchestrator.config import CONTAINER_NAME_VARS, ENV_OVERRIDES, parse_config
from orchestrator.config.schema import SECRET_KEYS
from orchestrator.config.watcher import ConfigWatcher
from orchestrator.daemon import Daemon
from orchestrator.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SRC = "o.yaml"
BASE = "engines: {image: engine:1, launch: {preset: acestream-http-proxy}, min_replicas: 2}\n"

DIGITS = "73519024867"
WORD = "hunter2sesame"
# how each wrong type is written, and the parts of it no message may hold
WRONG = {
    "number": (DIGITS, [DIGITS]),
    "float": ("90210.443", ["90210", "443"]),
    "list": (f"[{DIGITS}, {WORD}]", [DIGITS, WORD]),
    "mapping": (f"{{user: {WORD}, password: {DIGITS}}}", [DIGITS, WORD]),
    "date": ("2031-07-04", ["2031", "07-04"]),
    "binary": (f"!!binary {'aHVudGVyMnNlc2FtZQ=='}", ["aHVudGVy", WORD, "hunter"]),
}
KINDS = ("number", "list", "mapping")  # the ones run through every path; WRONG for the loader


def secret_file(key: str, written: str) -> str:
    section, name = key.split(".")
    return BASE + f"{section}:\n  {name}: {written}\n"


def assert_not_quoted(text: str, fragments: list[str]) -> None:
    for fragment in fragments:
        assert fragment not in text, f"{fragment!r} in {text!r}"


@pytest.fixture(autouse=True)
def no_seed_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """The watcher reads the process environment: none of the seed's variables from outside."""
    for var in (*ENV_OVERRIDES, *CONTAINER_NAME_VARS):
        monkeypatch.delenv(var, raising=False)


def test_the_secret_keys_are_the_keys_and_passwords() -> None:
    assert {"api.api_key", "vpn.api_key", "vpn.api_user", "vpn.api_password"} == SECRET_KEYS


@pytest.mark.parametrize("kind", sorted(WRONG))
@pytest.mark.parametrize("key", sorted(SECRET_KEYS))
def test_a_refused_secret_is_described_not_quoted(key: str, kind: str) -> None:
    written, fragments = WRONG[kind]
    with pytest.raises(ConfigError) as caught:
        parse_config(secret_file(key, written), source=SRC, env={})
    message = str(caught.value)
    assert message.startswith(f"{SRC}:3: {key}: expected a non-empty string, got "), message
    assert (caught.value.key, caught.value.line) == (key, 3)
    assert_not_quoted(message, fragments)


def test_a_number_key_is_told_to_be_quoted() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f"api:\n  api_key: {DIGITS}\n", source=SRC, env={})
    assert str(caught.value) == (
        f"{SRC}:2: api.api_key: expected a non-empty string, got an integer "
        "(YAML reads unquoted digits as a number: put the value in quotes)"
    )


@pytest.mark.parametrize("var", ["ORCHESTRATOR_API_KEY", "GLUETUN_API_KEY", "GLUETUN_API_PASSWORD"])
def test_a_blank_secret_variable_is_described_not_quoted(var: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("", source=SRC, env={var: " \t "})
    assert str(caught.value).startswith(f"env {var}: "), str(caught.value)
    assert str(caught.value).endswith("expected a non-empty string, got blanks only")


@pytest.mark.parametrize("var", ["ORCHESTRATOR_API_KEY", "GLUETUN_API_KEY", "GLUETUN_API_USER"])
def test_a_secret_variable_that_cannot_be_parsed_is_not_quoted(
    monkeypatch: pytest.MonkeyPatch, var: str
) -> None:
    """Their parser (`str`) takes anything today; one that refuses must not quote it either."""

    def refuse(raw: str) -> str:
        raise ValueError(raw)

    key, _ = ENV_OVERRIDES[var]
    monkeypatch.setitem(ENV_OVERRIDES, var, (key, refuse))
    with pytest.raises(ConfigError) as caught:
        parse_config("", source=SRC, env={var: WORD})
    assert str(caught.value) == f"env {var}: {key}: cannot parse the value"


def test_a_variable_that_is_no_secret_is_still_quoted() -> None:
    with pytest.raises(ConfigError, match="cannot parse 'many'"):
        parse_config("", source=SRC, env={"MAX_ACTIVE_REPLICAS": "many"})


def edit(path: Path, text: str) -> None:
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("key", sorted(SECRET_KEYS))
def test_the_watcher_logs_a_refused_secret_without_it(tmp_path: Path, key: str, kind: str) -> None:
    written, fragments = WRONG[kind]
    path = tmp_path / "orchestrator.yaml"
    path.write_text(BASE)
    rejected: list[ConfigError] = []
    watcher = ConfigWatcher(parse_config(BASE, source=str(path), env={}), path, on_rejected=rejected.append)

    edit(path, secret_file(key, written))
    with capture_logs() as logs:
        watcher.check()
        watcher.check()

    assert watcher.error is not None and watcher.error.key == key
    assert [e.key for e in rejected] == [key]
    assert [entry["event"] for entry in logs] == ["config_rejected"]
    assert_not_quoted(repr(logs), fragments)
    assert_not_quoted(str(watcher.error), fragments)


@pytest.mark.parametrize("key", sorted(SECRET_KEYS))
async def test_the_history_keeps_a_refused_secret_out(tmp_path: Path, key: str) -> None:
    """The daemon records the rejection in the history, which its journal keeps on disk."""
    path = tmp_path / "orchestrator.yaml"
    path.write_text(BASE)
    state = tmp_path / "state"
    daemon = Daemon(parse_config(BASE, source=str(path), env={}), path, state_dir=state)
    try:
        daemon.store.restore_streams()  # opens the journal, as the daemon's start does
        for kind in KINDS:
            edit(path, secret_file(key, WRONG[kind][0]) + f"# {kind}\n")
            daemon.watcher.check()
            daemon.watcher.check()
        entries = daemon.store.history.select()
    finally:
        await daemon.gateway.close()
        daemon.journal.close()
    assert [e.kind for e in entries] == ["config_rejected"] * len(KINDS)
    for entry in entries:
        assert key in entry.reason
        assert_not_quoted(repr(entry), [DIGITS, WORD])
    files = [f for f in state.rglob("*") if f.is_file()]
    assert any(b"config_rejected" in f.read_bytes() for f in files), "the journal kept no entry"
    for file in files:
        data = file.read_bytes()
        assert DIGITS.encode() not in data and WORD.encode() not in data, file


# one kind: the start-up reads the file through the same loader as the rows above (a process each)
@pytest.mark.parametrize("kind", KINDS[:1])
def test_start_up_refuses_a_secret_without_quoting_it(tmp_path: Path, kind: str) -> None:
    written, fragments = WRONG[kind]
    config = tmp_path / "orchestrator.yaml"
    config.write_text(f"state_dir: null\napi:\n  api_key: {written}\n")
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "--config", str(config), "--check"],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done
    assert f"{config}:3: api.api_key: expected a non-empty string" in done.stderr, done.stderr
    assert_not_quoted(done.stdout + done.stderr, fragments)


@pytest.mark.parametrize(
    ("written", "key", "says"),
    [
        (
            f"engines:\n  launch: {{preset: custom, env: {{TOKEN: {WORD}, BAD: [{DIGITS}]}}}}\n",
            "engines.launch.env",
            "entry 'BAD': expected a string value, got a list",
        ),
        (
            f"engines:\n  launch: {{preset: custom, env: [TOKEN={WORD}]}}\n",
            "engines.launch.env",
            "expected a mapping of names to strings, got a list",
        ),
        (
            f"engines:\n  env: [TOKEN={WORD}]\n",
            "engines.env",
            "expected a mapping of names to values, got a list",
        ),
        (
            f"engines:\n  launch: {{preset: custom, env: {{TOKEN: '{WORD}-{{oops}}'}}}}\n",
            "engines.launch.env",
            "write {{ and }} for literal braces)",
        ),
        (
            f"engines:\n  launch: {{preset: custom, command: [run, --access-token, {DIGITS}]}}\n",
            "engines.launch.command",
            "entry 2: expected a string, got an integer "
            "(YAML reads unquoted digits as a number: put the value in quotes)",
        ),
        (
            f"engines:\n  launch: {{preset: custom, command: ['--access-token={WORD}-{{oops}}']}}\n",
            "engines.launch.command",
            "write {{ and }} for literal braces)",
        ),
    ],
    ids=[
        "launch_env_entry",
        "launch_env_a_list",
        "env_a_list",
        "launch_env_unknown_placeholder",
        "command_entry_not_a_string",
        "command_unknown_placeholder",
    ],
)
def test_an_engine_environment_refused_is_described_not_quoted(written: str, key: str, says: str) -> None:
    """An engine's variables may hold credentials: the entry at fault is named, no value quoted
    (the whole mapping used to be, every other variable's value with it)."""
    with pytest.raises(ConfigError) as caught:
        parse_config(written, source=SRC, env={})
    assert caught.value.key == key and str(caught.value).endswith(says), str(caught.value)
    assert_not_quoted(str(caught.value), [DIGITS, WORD])
