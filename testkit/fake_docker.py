"""An in-memory Docker engine implementing the daemon's `DockerApi` seam, for fast tables.

It keeps containers, emits the events the real engine emits for what happens to them (create,
start, die, stop, kill, restart, destroy, health_status), with `timeNano` from one clock, and
lets a test hold a call (an inspect that does not return until released) or fail one, to stage
the races the event source must survive. The real-Docker suites stay the source of truth; this
fake only has to be faithful in what the daemon reads.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from orchestrator.docker.api import LogLine
from orchestrator.docker.containers import ContainerInfo
from orchestrator.errors import DockerError, DockerUnavailable
from reconcilers.listing import Listed

_ids = itertools.count(1)


def human_duration(seconds: float) -> str:
    """Docker's rounded uptime text (go-units' HumanDuration), up to days."""
    if seconds < 1:
        return "Less than a second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    if seconds < 120:
        return "About a minute"
    if seconds < 3600:
        return f"{int(seconds // 60)} minutes"
    hours = int(seconds // 3600)
    return "About an hour" if hours == 1 else f"{hours} hours" if hours < 48 else f"{hours // 24} days"


def _new_id(name: str) -> str:
    return hashlib.sha256(f"{name}/{next(_ids)}".encode()).hexdigest()


@dataclass(slots=True)
class FakeContainer:
    id: str
    name: str
    labels: dict[str, str]
    status: str = "created"
    health: str | None = None
    started_at: float | None = None
    created_at: float = field(default_factory=time.time)
    exit_code: int | None = None
    ip: str | None = "172.18.0.2"
    network_mode: str = ""
    body: Mapping[str, Any] = field(default_factory=dict)
    log: list[LogLine] = field(default_factory=list)  # this run's standard output

    def listed(self, now: float) -> Listed:
        """As Docker's listing shows it: the uptime as rounded text, the health in brackets."""
        if self.status == "running" and self.started_at is not None:
            status = f"Up {human_duration(now - self.started_at)}" + (
                f" ({self.health})" if self.health else ""
            )
        else:
            status = self.status.capitalize()
        digest = repr((sorted(self.labels.items()), self.ip, self.network_mode, self.created_at))
        return Listed(id=self.id, state=self.status, status=status, digest=digest)

    def info(self) -> ContainerInfo:
        running = self.status == "running"
        return ContainerInfo(
            id=self.id,
            name=self.name,
            status=self.status,
            health=self.health if running else None,
            started_at=self.started_at if running else None,
            created_at=self.created_at,
            labels=dict(self.labels),
            ip=self.ip,
            network_mode=self.network_mode,
            exit_code=None if running else self.exit_code,
        )


class FakeDocker:
    """`DockerApi` in memory. Every call is counted in `calls` (by verb)."""

    def __init__(self) -> None:
        self.containers: dict[str, FakeContainer] = {}
        self.calls: dict[str, int] = {}
        self.failures: dict[str, Callable[[str], DockerError | None]] = {}
        self.holds: dict[str, asyncio.Event] = {}
        self._subscribers: list[
            tuple[asyncio.Queue[dict[str, Any] | None], Callable[[dict[str, Any]], bool]]
        ] = []
        self.subscriptions: list[tuple[tuple[str, ...], tuple[str, ...]]] = []  # (labels, names) each
        self._log_followers: dict[str, list[asyncio.Queue[LogLine | None]]] = {}
        self._last_nano = 0

    # -- what the test does to the world ------------------------------------------------------
    def now_nano(self) -> int:
        """A strictly increasing clock, like Docker's event times."""
        self._last_nano = max(time.time_ns(), self._last_nano + 1)
        return self._last_nano

    def emit(
        self, container: FakeContainer, action: str, *, at_nano: int | None = None, **attributes: str
    ) -> int:
        """Send an event about `container` (at `at_nano`: a late or replayed one)."""
        nano = self.now_nano() if at_nano is None else at_nano
        event = {
            "Type": "container",
            "Action": action,
            "timeNano": nano,
            "Actor": {
                "ID": container.id,
                "Attributes": {**container.labels, "name": container.name, **attributes},
            },
        }
        for queue, wanted in self._subscribers:
            if wanted(event):
                queue.put_nowait(event)
        return nano

    def run(
        self,
        name: str,
        *,
        health: str | None = "healthy",
        labels: Mapping[str, str] = ({}),
        ip: str = "172.18.0.9",
    ) -> FakeContainer:
        """Create and start a container (a VPN, say) as `docker run` would."""
        container = FakeContainer(id=_new_id(name), name=name, labels=dict(labels), ip=ip, health=health)
        self.containers[container.id] = container
        self.emit(container, "create")
        self._start(container)
        return container

    def by_name(self, name: str) -> FakeContainer:
        return next(c for c in self.containers.values() if c.name == name)

    def set_health(self, name: str, health: str) -> None:
        container = self.by_name(name)
        container.health = health
        self.emit(container, f"health_status: {health}")

    def stop(self, name: str, *, action: str = "stop", exit_code: int = 143) -> None:
        """`docker stop` (kill + die + stop events) or `docker kill` (kill + die)."""
        container = self.by_name(name)
        self.emit(container, "kill", signal="15" if action == "stop" else "9")
        self._die(container, exit_code)
        if action == "stop":
            self.emit(container, "stop")

    def crash(self, name: str, exit_code: int = 1) -> None:
        """The process exits by itself: a die event and nothing else."""
        self._die(self.by_name(name), exit_code)

    def restart_in_place(self, name: str) -> None:
        """`docker restart`: same ID, a new StartedAt."""
        container = self.by_name(name)
        self.stop(name)
        self._start(container)
        self.emit(container, "restart")

    def recreate(self, name: str) -> FakeContainer:
        """`docker rm -f` and `docker run` again under the same name: a new ID."""
        old = self.by_name(name)
        self._destroy(old)
        return self.run(name, health=old.health, labels=old.labels, ip=old.ip or "172.18.0.9")

    def destroy(self, ref: str) -> None:
        """`docker rm -f` by someone else."""
        container = self._find(ref)
        assert container is not None, ref
        self._destroy(container)

    def end_stream(self) -> None:
        """Docker closes the event stream (the daemon went away, the socket dropped)."""
        for queue, _ in self._subscribers:
            queue.put_nowait(None)

    def _start(self, container: FakeContainer) -> None:
        container.status, container.exit_code, container.log = "running", None, []
        container.started_at = self.now_nano() / 1e9
        self.emit(container, "start")

    def _die(self, container: FakeContainer, exit_code: int) -> None:
        container.status, container.exit_code = "exited", exit_code
        for queue in self._log_followers.pop(container.id, []):
            queue.put_nowait(None)  # a followed log ends when its container stops
        self.emit(container, "die", exitCode=str(exit_code))

    def _destroy(self, container: FakeContainer) -> None:
        if container.status == "running":
            self.emit(container, "kill")
            self._die(container, 137)
        del self.containers[container.id]
        self.emit(container, "destroy")

    # -- DockerApi -----------------------------------------------------------------------------
    async def _enter(self, verb: str, ref: str) -> None:
        """Count the call; wait while `holds[verb]` or `holds[f"{verb}:{ref}"]` is unset."""
        self.calls[verb] = self.calls.get(verb, 0) + 1
        for key in (verb, f"{verb}:{ref}"):
            hold = self.holds.get(key)
            if hold is not None:
                await hold.wait()
        fail = self.failures.get(verb)
        if fail is not None:
            error = fail(ref)
            if error is not None:
                raise error

    def _find(self, ref: str) -> FakeContainer | None:
        return self.containers.get(ref) or next((c for c in self.containers.values() if c.name == ref), None)

    async def inspect(self, ref: str) -> ContainerInfo | None:
        """`holds["answer:<ref>"]` holds the answer *after* it was read: a reply Docker took
        long to deliver, older than what happened meanwhile."""
        await self._enter("inspect", ref)
        container = self._find(ref)
        answer = None if container is None else container.info()
        late = self.holds.get(f"answer:{ref}")
        if late is not None:
            await late.wait()
        return answer

    async def list_containers(self, labels: list[str]) -> list[Listed]:
        await self._enter("list", ",".join(labels))
        wanted = [tuple(label.split("=", 1)) for label in labels]
        now = time.time()
        return [
            c.listed(now) for c in self.containers.values() if all(c.labels.get(k) == v for k, v in wanted)
        ]

    async def create_and_start(self, name: str, body: Mapping[str, Any]) -> ContainerInfo:
        await self._enter("create", name)
        if self._find(name) is not None:
            raise DockerError(f"create {name}: name already in use", status=409)
        network = str((body.get("HostConfig") or {}).get("NetworkMode", ""))
        container = FakeContainer(
            id=_new_id(name),
            name=name,
            labels=dict(body.get("Labels") or {}),
            network_mode=network,
            body=body,
            ip=None if network.startswith("container:") else "172.18.0.20",
        )
        self.containers[container.id] = container
        self.emit(container, "create")
        vpn_id = network.removeprefix("container:") if network.startswith("container:") else None
        if vpn_id is not None and self.containers.get(vpn_id, None) is None:
            self._destroy(container)
            raise DockerError(f"start {name}: No such container: {vpn_id}", status=404)
        self._start(container)
        return container.info()

    async def restart(self, ref: str, timeout_s: int = 5) -> None:
        await self._enter("restart", ref)
        container = self._find(ref)
        if container is None:
            raise DockerError(f"restart {ref}: no such container", status=404)
        self.restart_in_place(container.name)

    async def remove(self, ref: str) -> None:
        await self._enter("remove", ref)
        container = self._find(ref)
        if container is not None:
            self._destroy(container)

    @asynccontextmanager
    async def events(
        self, since_nano: int | None = None, *, labels: Sequence[str] = (), names: Sequence[str] = ()
    ) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """Docker's filters: every one of `labels`, and a name or ID starting with one of `names`."""
        self.calls["events"] = self.calls.get("events", 0) + 1
        self.subscriptions.append((tuple(labels), tuple(names)))
        fail = self.failures.get("events")
        if fail is not None and (error := fail("events")) is not None:
            raise error

        def wanted(event: dict[str, Any]) -> bool:
            actor = event["Actor"]
            attributes = actor["Attributes"]
            return all(attributes.get(k) == v for k, _, v in (x.partition("=") for x in labels)) and (
                not names or any(actor["ID"].startswith(n) or attributes["name"].startswith(n) for n in names)
            )

        subscriber = (asyncio.Queue[dict[str, Any] | None](), wanted)
        self._subscribers.append(subscriber)
        try:
            yield self._drain(subscriber[0])
        finally:
            self._subscribers.remove(subscriber)

    @staticmethod
    async def _drain(queue: asyncio.Queue[dict[str, Any] | None]) -> AsyncIterator[dict[str, Any]]:
        while (event := await queue.get()) is not None:
            yield event

    @asynccontextmanager
    async def follow_log(self, ref: str, since: float | None = None) -> AsyncIterator[AsyncIterator[LogLine]]:
        """A container's log: what `write_log` wrote; it ends once the container stops."""
        await self._enter("logs", ref)
        container = self._find(ref)
        queue: asyncio.Queue[LogLine | None] = asyncio.Queue()
        if container is None or container.status != "running":
            queue.put_nowait(None)
        else:
            if container.log:
                queue.put_nowait(container.log[-1])
            self._log_followers.setdefault(container.id, []).append(queue)
        try:
            yield self._drain_log(queue)
        finally:
            if container is not None and queue in self._log_followers.get(container.id, []):
                self._log_followers[container.id].remove(queue)

    @staticmethod
    async def _drain_log(queue: asyncio.Queue[LogLine | None]) -> AsyncIterator[LogLine]:
        while (line := await queue.get()) is not None:
            yield line

    async def last_log_line(self, ref: str, since: float | None = None) -> LogLine | None:
        await self._enter("logs", ref)
        container = self._find(ref)
        return container.log[-1] if container is not None and container.log else None

    def write_log(self, name: str, text: str) -> None:
        """The container writes a line on its standard output."""
        container = self.by_name(name)
        line = LogLine(at=self.now_nano() / 1e9, text=text)
        container.log.append(line)
        for queue in self._log_followers.get(container.id, []):
            queue.put_nowait(line)

    async def close(self) -> None:
        self.end_stream()


def unavailable(_: str) -> DockerError:
    return DockerUnavailable("docker is down")
