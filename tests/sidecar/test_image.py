"""The daemon's image: pinned packages only, the documented entrypoint, healthcheck and stop signal.

`docker/requirements.lock` pins every Python package the image holds; its direct dependencies
must be exactly pyproject.toml's pins (so `make install` and the image run the same code), and
the built image must hold exactly the lock's runtime packages plus the daemon itself: no pip, no
setuptools, nothing from the host's virtualenv.
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

from testkit.harness import REPO, docker, label_args

LOCK = REPO / "docker" / "requirements.lock"
BUILD_ONLY_MARK = "# build only"


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_pins(lines: list[str]) -> dict[str, str]:
    pins: dict[str, str] = {}
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep and version and ";" not in version, f"not an exact pin: {line!r}"
        pins[normalize(name)] = version.strip()
    return pins


def lock_pins() -> tuple[dict[str, str], dict[str, str]]:
    """(runtime pins, build-only pins) of docker/requirements.lock."""
    text = LOCK.read_text()
    runtime, _, build = text.partition(BUILD_ONLY_MARK)
    return parse_pins(runtime.splitlines()), parse_pins(build.splitlines()[1:])


def pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return parse_pins(list(project["dependencies"]))


def test_lock_pins_exactly_what_pyproject_pins() -> None:
    runtime, build = lock_pins()
    direct = pyproject_pins()
    differing = {
        name: (version, runtime.get(name)) for name, version in direct.items() if runtime.get(name) != version
    }
    assert not differing, (
        f"docker/requirements.lock disagrees with pyproject.toml "
        f"(name: (pyproject, lock)): {differing}; regenerate the lock as its "
        f"header says"
    )
    assert set(build) == {"setuptools"}, build
    assert not set(runtime) & set(build)


def test_image_holds_exactly_the_locked_packages(daemon_image: str) -> None:
    script = (
        "import importlib.metadata as m, json, os, sys; print(json.dumps({"
        "'dists': {d.metadata['Name']: d.version for d in m.distributions()}, "
        "'python': sys.version_info[:2], 'executable': os.path.realpath(sys.executable)}))"
    )
    listing = docker(
        "run",
        "--rm",
        *label_args(),
        "--entrypoint",
        "/opt/venv/bin/python",
        daemon_image,
        "-c",
        script,
    )
    found = json.loads(listing)
    installed = {normalize(name): version for name, version in found["dists"].items()}
    runtime, _ = lock_pins()
    assert installed.pop("acestream-orchestrator") is not None
    assert installed == runtime
    assert tuple(found["python"]) >= (3, 11)
    assert found["executable"].startswith("/usr/"), found  # the base's Python, not a copied venv


def test_image_metadata(daemon_image: str) -> None:
    config = json.loads(docker("image", "inspect", "-f", "{{json .Config}}", daemon_image))
    assert config["Entrypoint"] == ["/usr/local/bin/orchestrator-entrypoint"]
    assert config["Cmd"] == ["--config", "/config/orchestrator.yaml"]
    assert config["Healthcheck"]["Test"] == ["CMD", "/usr/local/bin/orchestrator-healthcheck"]
    assert "8000/tcp" in config["ExposedPorts"]
    assert config["StopSignal"] == "SIGTERM"
    assert config["Labels"]["org.opencontainers.image.base.name"].startswith("acestream-orchestrator-test/")


def test_image_reports_its_own_command_line(daemon_image: str) -> None:
    done = subprocess.run(
        ["docker", "run", "--rm", *label_args(), daemon_image, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "--config" in done.stdout and "--check" in done.stdout


def test_context_excludes_local_state() -> None:
    """The build context is a whitelist: no .venv, .git, tests or caches reach the image."""
    lines = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    assert "*" in lines
    included = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert included <= {
        "Dockerfile",
        "pyproject.toml",
        "README.md",
        "config.example.yaml",
        "docker",
        "orchestrator",
        "reconcilers",
    }, included
    for path in included:
        assert (REPO / Path(path)).exists(), path
