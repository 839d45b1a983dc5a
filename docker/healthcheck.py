#!/opt/venv/bin/python
"""The image's HEALTHCHECK: `GET /health` on the address the running daemon listens on.

The API address lives in the desired-state YAML (`api.host`, `api.port`), so this reads the same
file the daemon was started with (the `--config` argument of PID 1, with the same environment).
When the file is being edited and is invalid right now, the daemon keeps its last good state, so
this falls back to the raw `api` section, then to the defaults, rather than report a healthy
daemon as unhealthy. Exit 0 when the daemon answers 200, 1 otherwise (Docker's convention).
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from orchestrator.config import SCHEMA, load_config
from orchestrator.errors import ConfigError

DEFAULT_CONFIG = "/config/orchestrator.yaml"
TIMEOUT_S = 3.0


def daemon_config_path(cmdline: bytes) -> str:
    args = [a.decode(errors="replace") for a in cmdline.split(b"\0") if a]
    for i, arg in enumerate(args):
        if arg == "--config" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--config="):
            return arg.removeprefix("--config=")
    return DEFAULT_CONFIG


def api_address(path: Path) -> tuple[str, int]:
    try:
        api = load_config(path).api
        host, port = api.host, api.port
    except ConfigError:
        host, port = SCHEMA["api"]["host"][0], SCHEMA["api"]["port"][0]
        try:
            raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
            section = raw.get("api") if isinstance(raw, dict) else None
            if isinstance(section, dict):
                host = section.get("host", host) if isinstance(section.get("host"), str) else host
                port = section.get("port", port) if isinstance(section.get("port"), int) else port
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            pass  # the defaults above
    if host in ("0.0.0.0", "::", ""):  # a wildcard listen address: probe loopback
        host = "127.0.0.1"
    return (f"[{host}]" if ":" in host else host), port


def main() -> int:
    try:
        cmdline = Path("/proc/1/cmdline").read_bytes()
    except OSError:
        cmdline = b""
    host, port = api_address(Path(daemon_config_path(cmdline)))
    url = f"http://{host}:{port}/health"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            ok = resp.status == 200
    except (urllib.error.URLError, OSError) as exc:
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1
    print(f"healthcheck: {url}: {'ok' if ok else 'not ok'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
