"""The one place that talks to Docker (the only importer of aiodocker): `DockerApi` for real.

It turns Docker's JSON into `ContainerInfo` once, here at the edge (`containers`), and maps every
aiodocker or aiohttp failure to the project's error tree (`orchestrator.errors`): a lost
connection is `DockerUnavailable` (transient), a missing image `ImageNotFound` (permanent), a
name clash `DockerConflict`, a port taken by something else `PortInUse`. Nothing else in the
daemon sees a raw Docker payload except the event dicts, which `events` passes through unchanged
(they are plain JSON with `timeNano`).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import structlog
from aiodocker.exceptions import DockerError as AioDockerError

from orchestrator.docker.api import EVENT_ACTIONS, LogLine
from orchestrator.docker.containers import ContainerInfo, container_info, listed_container, parse_docker_time
from orchestrator.errors import (
    DockerConflict,
    DockerError,
    DockerUnavailable,
    ImageNotFound,
    PortInUse,
)
from reconcilers.events import SKIPPED_ACTION
from reconcilers.listing import Listed

log = structlog.get_logger()

PORT_TAKEN = ("already allocated", "address already in use")
# How long each call may take before it counts as Docker not answering (a transient error the
# caller backs off from). dockerd and containerd can hang one call for ever (a stuck shim);
# nothing the daemon awaits may wait with them. Pulls have their own, long, limit.
READ_TIMEOUT_S = 10.0  # inspect, list
WRITE_TIMEOUT_S = 30.0  # create, start, remove
PULL_TIMEOUT_S = 600.0
RESTART_SLACK_S = 30.0  # beyond the stop timeout a restart is given
MAX_EVENT_LINE = 1024 * 1024  # a longer event line (huge labels) is skipped, not fatal
MAX_LOG_LINE = 64 * 1024  # a probe writes short lines; anything longer is cut
KEEPALIVE_S = 90.0  # an idle connection to a local socket is kept past the longest resync interval
SOCKET_PATHS = ("/run/docker.sock", "/var/run/docker.sock")


def local_socket(url: str | None, docker_host: str | None) -> str | None:
    """The path of the local Docker socket the daemon talks to (`url`, else DOCKER_HOST, else the
    usual paths), or None when it talks to Docker another way (TCP, SSH: aiodocker's defaults)."""
    host = url or docker_host
    if host is None:
        return next((path for path in SOCKET_PATHS if Path(path).is_socket()), None)
    return host.removeprefix("unix://") if host.startswith("unix://") else None


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


_CONNECTION_ERRORS = (AioDockerError, aiohttp.ClientError, OSError)


@asynccontextmanager
async def _bounded(seconds: float, doing: str) -> AsyncIterator[None]:
    """`doing` may take `seconds`; longer is `DockerUnavailable` (transient: back off, retry)."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError as exc:
        raise DockerUnavailable(f"{doing}: Docker did not answer within {seconds:g}s") from exc


class DockerGateway:
    """`DockerApi` against the Docker engine at `url` (default: DOCKER_HOST or the local socket)."""

    def __init__(self, url: str | None = None) -> None:
        socket_path = local_socket(url, os.environ.get("DOCKER_HOST"))
        self._connector: aiohttp.UnixConnector | None = None
        if socket_path is None:
            self._docker = aiodocker.Docker(url=url)
        else:
            # aiohttp closes an idle connection after 15 s, and a resync comes every 45 +/- 15 s:
            # each would connect again, and wake the daemon for it
            self._connector = aiohttp.UnixConnector(socket_path, keepalive_timeout=KEEPALIVE_S)
            self._docker = aiodocker.Docker(url="unix://localhost", connector=self._connector)

    async def close(self) -> None:
        await self._docker.close()
        if self._connector is not None:
            await self._connector.close()

    async def inspect(self, ref: str) -> ContainerInfo | None:
        """The container by ID or name, or None when it does not exist."""
        try:
            async with _bounded(READ_TIMEOUT_S, f"inspect {ref}"):
                raw = await self._docker.containers.container(ref).show()
        except AioDockerError as exc:
            if exc.status == 404:
                return None
            raise _wrap(exc, f"inspect {ref}") from exc
        except _CONNECTION_ERRORS as exc:
            raise _wrap(exc, f"inspect {ref}") from exc
        return container_info(raw)

    async def list_containers(self, labels: list[str]) -> list[Listed]:
        """Every container, running or not, carrying all `labels` (`key=value`), as listed."""
        try:
            async with _bounded(READ_TIMEOUT_S, "list containers"):
                found = await self._docker._query_json(
                    "containers/json", params={"all": "1", "filters": json.dumps({"label": labels})}
                )
        except _CONNECTION_ERRORS as exc:
            raise _wrap(exc, "list containers") from exc
        return [listed_container(entry) for entry in found]

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
            async with _bounded(WRITE_TIMEOUT_S, f"start {name}"):
                await container.start()
        except (*_CONNECTION_ERRORS, DockerUnavailable) as exc:
            error = exc if isinstance(exc, DockerError) else _wrap(exc, f"start {name}")
            await self.remove(container.id)  # never leak a container that did not start
            raise error from exc
        info = await self.inspect(container.id)
        if info is None:
            raise DockerError(f"{name} vanished right after it started")
        return info

    async def _create(self, name: str, body: Mapping[str, Any]) -> Any:
        """Create; AioDockerError passes through (the caller pulls a missing image once)."""
        try:
            async with _bounded(WRITE_TIMEOUT_S, f"create {name}"):
                return await self._docker.containers.create(dict(body), name=name)
        except AioDockerError:
            raise
        except _CONNECTION_ERRORS as exc:
            raise _wrap(exc, f"create {name}") from exc

    async def _pull(self, image: str, what: str = "is not present and could not be pulled") -> None:
        """Pull a missing image; large images on slow links take minutes (the executor gives
        creations a long timeout for this)."""
        try:
            async with _bounded(PULL_TIMEOUT_S, f"pull {image}"):
                progress = await self._docker.images.pull(image, timeout=None)
        except (*_CONNECTION_ERRORS, DockerUnavailable) as exc:
            raise ImageNotFound(f"image {image} {what}: {exc}") from exc
        failed = [p["error"] for p in progress if isinstance(p, dict) and p.get("error")]
        if failed:
            raise ImageNotFound(f"image {image} {what}: {failed[-1]}")

    async def pull_image(self, image: str) -> str:
        """Pull `image` from its registry (present or not) and return the image ID its tag now
        points at: a new ID means a new digest was published under the tag."""
        await self._pull(image, "could not be pulled")
        try:
            async with _bounded(READ_TIMEOUT_S, f"inspect image {image}"):
                raw = await self._docker.images.inspect(image)
        except _CONNECTION_ERRORS as exc:
            raise _wrap(exc, f"inspect image {image}") from exc
        return str(raw["Id"])

    async def restart(self, ref: str, timeout_s: int = 5) -> None:
        try:
            async with _bounded(timeout_s + RESTART_SLACK_S, f"restart {ref}"):
                await self._docker.containers.container(ref).restart(t=timeout_s)
        except _CONNECTION_ERRORS as exc:
            raise _wrap(exc, f"restart {ref}") from exc

    async def remove(self, ref: str) -> None:
        """Force-remove; a container that is already gone counts as removed."""
        try:
            async with _bounded(WRITE_TIMEOUT_S, f"remove {ref}"):
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
    async def events(
        self, since_nano: int | None = None, *, labels: Sequence[str] = (), names: Sequence[str] = ()
    ) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """Subscribe to container events. Entering means subscribed; iterating yields raw event
        dicts and simply ends when Docker closes the stream. Docker filters them on its side:
        the containers carrying all `labels` (`key=value`), or else those named one of `names`."""
        filters: dict[str, list[str]] = {"type": ["container"], "event": list(EVENT_ACTIONS)}
        if labels:
            filters["label"] = list(labels)
        if names:
            filters["container"] = list(names)
        params: dict[str, Any] = {"filters": json.dumps(filters)}
        if since_nano is not None:
            params["since"] = f"{since_nano // 1_000_000_000}.{since_nano % 1_000_000_000:09d}"
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None, connect=10)
        try:
            async with self._docker._query("events", params=params, timeout=timeout) as response:
                yield self._lines(response)
        except _CONNECTION_ERRORS as exc:
            raise _wrap(exc, "docker events") from exc

    @asynccontextmanager
    async def follow_log(self, ref: str, since: float | None = None) -> AsyncIterator[AsyncIterator[LogLine]]:
        """Follow a container's standard output: its last line written since `since` (a Unix
        time: the container's start), then each new line as it is written. The stream ends
        when the container stops or Docker closes it."""
        params = {"stdout": "1", "stderr": "0", "follow": "1", "tail": "1", "timestamps": "1"}
        if since is not None:
            params["since"] = f"{since:.9f}"
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None, connect=10)
        path = f"containers/{ref}/logs"
        try:
            async with self._docker._query(path, params=params, timeout=timeout) as response:
                yield self._log_lines(response)
        except _CONNECTION_ERRORS as exc:
            raise _wrap(exc, f"logs of {ref}") from exc

    async def last_log_line(self, ref: str, since: float | None = None) -> LogLine | None:
        """The last line a container wrote on its standard output since `since`, or None."""
        params = {"stdout": "1", "stderr": "0", "tail": "1", "timestamps": "1"}
        if since is not None:
            params["since"] = f"{since:.9f}"
        last: LogLine | None = None
        try:
            async with (
                _bounded(READ_TIMEOUT_S, f"logs of {ref}"),
                self._docker._query(f"containers/{ref}/logs", params=params) as response,
            ):
                async for line in self._log_lines(response):
                    last = line
        except AioDockerError as exc:
            if exc.status == 404:
                return None
            raise _wrap(exc, f"logs of {ref}") from exc
        except _CONNECTION_ERRORS as exc:
            raise _wrap(exc, f"logs of {ref}") from exc
        return last

    @staticmethod
    async def _log_lines(response: aiohttp.ClientResponse) -> AsyncIterator[LogLine]:
        try:
            async for at, text in log_lines(response.content.iter_any()):
                yield LogLine(at=at, text=text)
        except (aiohttp.ClientError, OSError) as exc:
            raise DockerUnavailable(f"log stream broke: {exc}") from exc

    @staticmethod
    async def _lines(response: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
        """Event dicts, one per line. A line over `MAX_EVENT_LINE` (a container with enormous
        labels, anywhere on the host) is skipped with a warning; aiohttp's own line reader
        would end the stream on it, and with it the daemon."""
        try:
            async for line in event_lines(response.content.iter_any()):
                if line is None:
                    log.warning("docker_event_skipped", reason=f"an event line over {MAX_EVENT_LINE} bytes")
                    yield {"Action": SKIPPED_ACTION}
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    continue  # not an event; the next resync covers anything it meant
                if isinstance(event, dict):
                    yield event
        except (aiohttp.ClientError, OSError) as exc:
            raise DockerUnavailable(f"docker event stream broke: {exc}") from exc


async def event_lines(
    chunks: AsyncIterator[bytes], limit: int = MAX_EVENT_LINE
) -> AsyncIterator[bytes | None]:
    """Split a byte stream on newlines, keeping at most `limit` bytes of one line: a longer
    line is dropped as it streams in and yields None once, where it ends."""
    buffer = bytearray()
    dropping = False
    async for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            if not dropping and len(buffer) + end - start <= limit:
                buffer += chunk[start:end]
                if buffer.strip():
                    yield bytes(buffer)
            else:
                yield None
            buffer.clear()
            dropping = False
            start = end + 1
        if not dropping:
            buffer += chunk[start:]
            if len(buffer) > limit:
                buffer.clear()
                dropping = True
    if buffer.strip() and not dropping:
        yield bytes(buffer)


async def log_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[float | None, str]]:
    """Docker's multiplexed log stream (a container without a TTY: frames of an 8-byte header,
    the last four its payload's length) as (time, text) lines, the time being the line's
    `timestamps=1` prefix. A line longer than `MAX_LOG_LINE` is cut."""
    buffer = bytearray()
    pending = bytearray()
    async for chunk in chunks:
        buffer += chunk
        while len(buffer) >= 8:
            size = int.from_bytes(buffer[4:8], "big")
            if len(buffer) < 8 + size:
                break
            pending += buffer[8 : 8 + size]
            del buffer[: 8 + size]
            while (end := pending.find(b"\n")) != -1:
                yield _stamped(bytes(pending[:end]))
                del pending[: end + 1]
            if len(pending) > MAX_LOG_LINE:
                yield _stamped(bytes(pending[:MAX_LOG_LINE]))
                pending.clear()
    if pending.strip():
        yield _stamped(bytes(pending))


def _stamped(raw: bytes) -> tuple[float | None, str]:
    text = raw.decode(errors="replace").rstrip("\r")
    stamp, _, rest = text.partition(" ")
    try:
        return parse_docker_time(stamp), rest
    except ValueError:
        return None, text
