"""The one place that talks to Docker (the only importer of aiodocker).

It turns Docker's JSON into `ContainerInfo` once, here at the edge, and maps every aiodocker or
aiohttp failure to the project's error tree (`orchestrator.errors`): a lost connection is
`DockerUnavailable` (transient), a missing image `ImageNotFound` (permanent), a name or port
clash `DockerConflict`. Nothing else in the daemon sees a raw Docker payload except the event
dicts, which `events` passes through unchanged (they are plain JSON with `timeNano`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiodocker
import aiohttp
from aiodocker.exceptions import DockerError as AioDockerError

from orchestrator.errors import DockerConflict, DockerError, DockerUnavailable, ImageNotFound

EVENT_ACTIONS = ("create", "start", "restart", "kill", "die", "stop", "destroy", "rename", "pause",
                 "unpause", "health_status")


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerInfo:
    id: str
    name: str
    status: str
    health: str | None
    started_at: float | None
    created_at: float
    labels: Mapping[str, str] = field(default_factory=dict)
    ip: str | None = None
    network_mode: str = ""
    error: str = ""
    exit_code: int | None = None


def parse_docker_time(value: str | None) -> float | None:
    """Docker's RFC 3339 timestamps with nanoseconds -> POSIX seconds; its zero time -> None."""
    if not value or value.startswith("0001-01-01"):
        return None
    head, _, frac = value.rstrip("Z").partition(".")
    zone = ""
    for sign in ("+", "-"):
        if sign in frac:
            frac, _, rest = frac.partition(sign)
            zone = sign + rest
    micro = (frac + "000000")[:6] if frac else "000000"
    return datetime.fromisoformat(f"{head}.{micro}{zone or '+00:00'}").timestamp()


def container_info(raw: Mapping[str, Any]) -> ContainerInfo:
    """Convert a `docker inspect` document."""
    state = raw.get("State") or {}
    health = (state.get("Health") or {}).get("Status")
    networks = ((raw.get("NetworkSettings") or {}).get("Networks") or {}).values()
    ip = next((n.get("IPAddress") for n in networks if n.get("IPAddress")), None)
    return ContainerInfo(
        id=raw["Id"],
        name=str(raw.get("Name", "")).lstrip("/"),
        status=state.get("Status", "unknown"),
        health=health,
        started_at=parse_docker_time(state.get("StartedAt")) if state.get("Running") else None,
        created_at=parse_docker_time(raw.get("Created")) or 0.0,
        labels=dict((raw.get("Config") or {}).get("Labels") or {}),
        ip=ip,
        network_mode=(raw.get("HostConfig") or {}).get("NetworkMode", ""),
        error=state.get("Error", ""),
        exit_code=state.get("ExitCode") if not state.get("Running") else None,
    )


def _wrap(exc: Exception, doing: str) -> DockerError:
    if isinstance(exc, AioDockerError):
        message = f"{doing}: {exc.message}"
        if exc.status == 900 or exc.status >= 502:
            return DockerUnavailable(message, status=exc.status)
        if exc.status == 404 and "image" in exc.message.lower():
            return ImageNotFound(message, status=404)
        if exc.status == 409 or "already allocated" in exc.message or "address already in use" in exc.message:
            return DockerConflict(message, status=exc.status)
        return DockerError(message, status=exc.status)
    return DockerUnavailable(f"{doing}: {exc}")


_CONNECTION_ERRORS = (AioDockerError, aiohttp.ClientError, OSError, TimeoutError)


class DockerGateway:
    def __init__(self, url: str | None = None) -> None:
        self._docker = aiodocker.Docker(url=url)

    async def close(self) -> None:
        await self._docker.close()

    async def inspect(self, ref: str) -> ContainerInfo | None:
        """The container by ID or name, or None when it does not exist."""
        try:
            raw = await self._docker.containers.container(ref).show()
        except AioDockerError as exc:
            if exc.status == 404:
                return None
            raise _wrap(exc, f"inspect {ref}") from exc
        except _CONNECTION_ERRORS as exc:
            raise _wrap(exc, f"inspect {ref}") from exc
        return container_info(raw)

    async def list_ids(self, labels: list[str]) -> list[str]:
        """IDs of every container, running or not, carrying all `labels` (`key=value`)."""
        try:
            found = await self._docker.containers.list(all=True, filters=json.dumps({"label": labels}))
        except _CONNECTION_ERRORS as exc:
            raise _wrap(exc, "list containers") from exc
        return [c.id for c in found]

    async def create_and_start(self, name: str, body: Mapping[str, Any]) -> ContainerInfo:
        """Create and start a container; a container that cannot start is removed, not leaked."""
        try:
            container = await self._create(name, body)
        except AioDockerError as exc:
            if not (exc.status == 404 and "image" in exc.message.lower()):
                raise _wrap(exc, f"create {name}") from exc
            await self._pull(str(body["Image"]))
            try:
                container = await self._create(name, body)
            except AioDockerError as again:
                raise _wrap(again, f"create {name}") from again
        try:
            await container.start()
        except _CONNECTION_ERRORS as exc:
            error = _wrap(exc, f"start {name}")
            await self.remove(container.id)
            raise error from exc
        info = await self.inspect(container.id)
        if info is None:
            raise DockerError(f"{name} vanished right after it started")
        return info

    async def _create(self, name: str, body: Mapping[str, Any]) -> Any:
        """Create; AioDockerError passes through (the caller pulls a missing image once)."""
        try:
            return await self._docker.containers.create(dict(body), name=name)
        except AioDockerError:
            raise
        except _CONNECTION_ERRORS as exc:
            raise _wrap(exc, f"create {name}") from exc

    async def _pull(self, image: str) -> None:
        """Pull a missing image; large images on slow links take minutes (the executor gives
        creations a long timeout for this)."""
        try:
            progress = await self._docker.images.pull(image, timeout=None)
        except _CONNECTION_ERRORS as exc:
            raise ImageNotFound(f"image {image} is not present and could not be pulled: {exc}") from exc
        failed = [p["error"] for p in progress if isinstance(p, dict) and p.get("error")]
        if failed:
            raise ImageNotFound(f"image {image} is not present and could not be pulled: {failed[-1]}")

    async def restart(self, ref: str, timeout_s: int = 5) -> None:
        try:
            await self._docker.containers.container(ref).restart(t=timeout_s)
        except _CONNECTION_ERRORS as exc:
            raise _wrap(exc, f"restart {ref}") from exc

    async def remove(self, ref: str) -> None:
        """Force-remove; a container that is already gone counts as removed."""
        try:
            await self._docker.containers.container(ref).delete(force=True, v=True)
        except AioDockerError as exc:
            if exc.status == 404:
                return
            if exc.status == 409 and "already in progress" in exc.message:
                return
            raise _wrap(exc, f"remove {ref}") from exc
        except _CONNECTION_ERRORS as exc:
            raise _wrap(exc, f"remove {ref}") from exc

    @asynccontextmanager
    async def events(self, since_nano: int | None = None) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """Subscribe to container events. Entering means subscribed; iterating yields raw event
        dicts and simply ends when Docker closes the stream."""
        params: dict[str, Any] = {
            "filters": json.dumps({"type": ["container"], "event": list(EVENT_ACTIONS)}),
        }
        if since_nano is not None:
            params["since"] = f"{since_nano // 1_000_000_000}.{since_nano % 1_000_000_000:09d}"
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None, connect=10)
        try:
            async with self._docker._query("events", params=params, timeout=timeout) as response:
                yield self._lines(response)
        except _CONNECTION_ERRORS as exc:
            raise _wrap(exc, "docker events") from exc

    @staticmethod
    async def _lines(response: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
        try:
            async for line in response.content:
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    continue  # not an event; the next resync covers anything it meant
                if isinstance(event, dict):
                    yield event
        except (aiohttp.ClientError, OSError) as exc:
            raise DockerUnavailable(f"docker event stream broke: {exc}") from exc
