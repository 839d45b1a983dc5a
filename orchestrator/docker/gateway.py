"""The one place that talks to Docker (the only importer of aiodocker): `DockerApi` for real.

It turns Docker's JSON into `ContainerInfo` once, here at the edge (`containers`), and maps every
aiodocker or aiohttp failure to the project's error tree (`orchestrator.errors`): a lost
connection is `DockerUnavailable` (transient), a missing image `ImageNotFound` (permanent), a
name clash `DockerConflict`, a port taken by something else `PortInUse`. Nothing else in the
daemon sees a raw Docker payload except the event dicts, which `events` passes through unchanged
(they are plain JSON with `timeNano`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiodocker
import aiohttp
from aiodocker.exceptions import DockerError as AioDockerError

from orchestrator.docker.api import EVENT_ACTIONS
from orchestrator.docker.containers import ContainerInfo, container_info
from orchestrator.errors import (
    DockerConflict,
    DockerError,
    DockerUnavailable,
    ImageNotFound,
    PortInUse,
)

PORT_TAKEN = ("already allocated", "address already in use")


def _wrap(exc: Exception, doing: str) -> DockerError:
    if isinstance(exc, AioDockerError):
        message = f"{doing}: {exc.message}"
        if exc.status == 900 or exc.status >= 502:
            return DockerUnavailable(message, status=exc.status)
        if exc.status == 404 and "image" in exc.message.lower():
            return ImageNotFound(message, status=404)
        if any(text in exc.message for text in PORT_TAKEN):
            return PortInUse(message, status=exc.status)
        if exc.status == 409:
            return DockerConflict(message, status=exc.status)
        return DockerError(message, status=exc.status)
    return DockerUnavailable(f"{doing}: {exc}")


_CONNECTION_ERRORS = (AioDockerError, aiohttp.ClientError, OSError, TimeoutError)


class DockerGateway:
    """`DockerApi` against the Docker engine at `url` (default: DOCKER_HOST or the local socket)."""

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
