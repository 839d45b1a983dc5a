"""Where the API listens, written once to a file for the image's health check to read.

The image's `HEALTHCHECK` runs every 10 s. It used to start a Python interpreter that imported
PyYAML and the config loader to find the API's address (about 100 ms of CPU a run); now the
daemon writes the address it actually listens on (`host port`, a wildcard as loopback) to
`$ORCHESTRATOR_API_FILE` once it listens, and `docker/healthcheck.sh` (bash, its `/dev/tcp`)
reads it and asks `GET /health`: a few milliseconds. The address needs a restart to change, so
once is enough.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "ORCHESTRATOR_API_FILE"
WILDCARDS = ("0.0.0.0", "::", "")


def probe_address(host: str, port: int) -> str:
    """The line the health check reads: where to reach the API from inside the container."""
    return f"{'127.0.0.1' if host in WILDCARDS else host} {port}\n"


def write_address_file(host: str, port: int, environ: os._Environ[str] | dict[str, str] = os.environ) -> None:
    path = environ.get(ENV)
    if not path:
        return
    target = Path(path)
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_text(probe_address(host, port))
    temporary.replace(target)  # the check never reads half a line
