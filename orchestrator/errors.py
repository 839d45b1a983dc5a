"""The project's one error tree, so callers catch our types and never a third party's.

    OrchestratorError
    ├── ConfigError               bad YAML or environment: file, line and key in the message
    ├── DockerError               anything the Docker API did not do
    │   ├── DockerUnavailable     socket unreachable / connection lost (transient: retry)
    │   ├── ImageNotFound         engine image missing locally and not pullable (permanent)
    │   └── DockerConflict        name or port already in use (transient: pick again)
    │       └── PortInUse         a port the engine needs is taken by something else
    └── ControlApiError           Gluetun control server did not answer usefully
        ├── ControlApiAuthError   it answered 401 on a route every role covers: wrong credentials
        └── ControlApiUnreachable no connection at all (refused, timed out): Gluetun is stuck

Third-party errors are wrapped at the boundary (`raise ... from exc`) by the one module that
talks to each service: `docker.gateway` for Docker, `vpn.control` for Gluetun.
"""

from __future__ import annotations


class OrchestratorError(Exception):
    """Root of every error this project raises on purpose."""


MAX_DETAIL = 400  # characters of a config error's message; a huge bad value is cut in the middle


def shortened(message: str, limit: int = MAX_DETAIL) -> str:
    """`message` cut in the middle when longer than `limit`: a 900 kB bad value must not land
    whole in every log line and on `/status`, and both ends say what was wrong."""
    if len(message) <= limit:
        return message
    head, tail = limit * 2 // 3, limit // 3
    return f"{message[:head]}... ({len(message) - head - tail} characters cut) ...{message[-tail:]}"


class ConfigError(OrchestratorError):
    def __init__(self, message: str, *, source: str, line: int | None = None, key: str | None = None) -> None:
        message = shortened(message)
        self.source = source
        self.line = line
        self.key = key
        self.detail = message
        where = source if line is None else f"{source}:{line}"
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")


class DockerError(OrchestratorError):
    transient = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class DockerUnavailable(DockerError):
    transient = True


class ImageNotFound(DockerError):
    pass


class DockerConflict(DockerError):
    transient = True


class PortInUse(DockerConflict):
    pass


class ControlApiError(OrchestratorError):
    pass


class ControlApiAuthError(ControlApiError):
    pass


class ControlApiUnreachable(ControlApiError):
    pass
