"""The Docker seam: the calls the daemon makes, as a `Protocol`.

`DockerGateway` implements it against the real engine (the only importer of aiodocker); the fast
tests implement it in memory (`testkit/fake_docker.py`) to drive the event source, executor and
reconcile loop as tables. Every method raises only the project's `DockerError` family.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from orchestrator.docker.containers import ContainerInfo
from reconcilers.listing import Listed

# Docker's container events the daemon subscribes to.
EVENT_ACTIONS = (
    "create",
    "start",
    "restart",
    "kill",
    "die",
    "stop",
    "destroy",
    "rename",
    "pause",
    "unpause",
    "health_status",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class LogLine:
    """One line of a container's standard output, with the time Docker stamped on it."""

    at: float | None
    text: str


class DockerApi(Protocol):
    async def inspect(self, ref: str) -> ContainerInfo | None:
        """The container by ID or name, or None when it does not exist."""

    async def list_containers(self, labels: list[str]) -> list[Listed]:
        """Every container, running or not, carrying all `labels` (`key=value`), as listed."""

    async def create_and_start(self, name: str, body: Mapping[str, Any]) -> ContainerInfo:
        """Create and start a container (pulling a missing image once); one that cannot start
        is removed, not leaked."""

    async def restart(self, ref: str, timeout_s: int = 5) -> None: ...

    async def remove(self, ref: str) -> None:
        """Force-remove; a container that is already gone counts as removed."""

    def events(
        self, since_nano: int | None = None, *, labels: Sequence[str] = (), names: Sequence[str] = ()
    ) -> AbstractAsyncContextManager[AsyncIterator[dict[str, Any]]]:
        """Subscribe to container events. Entering means subscribed; iterating yields raw event
        dicts and simply ends when Docker closes the stream. Docker filters on its side: only the
        containers carrying all `labels` (`key=value`) if given, and only those named one of
        `names` (Docker matches a name as a prefix) if given: others' events never reach us."""

    def follow_log(
        self, ref: str, since: float | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[LogLine]]:
        """Follow a container's standard output: its last line written since `since` (a Unix
        time), then each new line. The stream ends when the container stops."""

    async def last_log_line(self, ref: str, since: float | None = None) -> LogLine | None:
        """The last line a container wrote on its standard output since `since`, or None."""

    async def close(self) -> None: ...
