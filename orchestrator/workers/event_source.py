"""Docker events in, observed state out: subscribe, then list, then apply.

The stream is a hint, the world is the truth. An event's own facts (a health status, a death)
are applied to the store at once so visibility follows within the same call; then the
container is inspected and the store corrected from what Docker says. The stream ends
silently when Docker goes away: we reconnect with backoff, pass `since=` the last event seen,
and resync in full. A jittered periodic resync makes any missed event harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable, Collection
from typing import Any, assert_never

import structlog

from orchestrator.config import Config
from orchestrator.docker.api import DockerApi, LogLine
from orchestrator.docker.containers import ContainerInfo, vpn_container
from orchestrator.docker.engines import engine_sighting, pool_filters
from orchestrator.docker.probes import log_since, parse_verdict, probe_observation
from orchestrator.errors import DockerError, DockerUnavailable
from orchestrator.state.store import StateStore
from orchestrator.workers.inspections import Inspections
from orchestrator.workers.probe_logs import ProbeLogs
from reconcilers.events import (
    EngineChanged,
    EngineGone,
    Ignore,
    Known,
    Noted,
    ProbeChanged,
    ProbeGone,
    ProbeHealth,
    Resync,
    Seen,
    VpnChanged,
    VpnHealth,
    VpnStopped,
    classify,
    event_time_nano,
    is_engine,
    is_probe,
)
from reconcilers.listing import Inspected, Listed, health_text, must_inspect
from reconcilers.model import ProbeObs
from reconcilers.vpn import ContainerSeen, ProbeReported

log = structlog.get_logger()

RESYNC_INTERVAL_S = 45.0
RESYNC_JITTER_S = 15.0
RESYNC_DEADLINE_S = 60.0
RESYNC_CONCURRENCY = 16  # inspects in flight at once (a host with hundreds of engines)
FULL_SWEEP_EVERY = 8  # every 8th timed resync inspects every container (about every 6 minutes)
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0


class Unanswered:
    """A resync's inspect Docker did not answer: what the store knows of that container stays."""


UNANSWERED = Unanswered()


class EventSource:
    def __init__(
        self,
        docker: DockerApi,
        store: StateStore,
        config: Callable[[], Config],
        *,
        on_hidden: Callable[[float], None] = lambda seconds: None,
        vpn_names: Callable[[], tuple[str, ...]] | None = None,
        resync_deadline_s: float = RESYNC_DEADLINE_S,
    ) -> None:
        """`vpn_names`: the VPN containers to follow (default: those in force; the daemon adds
        those a held edit names, to see them appear)."""
        self._on_hidden = on_hidden
        self._vpn_names_of = vpn_names
        self._resync_deadline_s = resync_deadline_s
        self._docker = docker
        self._store = store
        self._config = config
        self.last_time_nano: int | None = None
        self._resync_floor_nano = 0
        self._resync_lock = asyncio.Lock()
        self._resync_wanted = asyncio.Event()
        self._names_recheck = asyncio.Event()
        self._backoff = BACKOFF_FIRST_S
        self._inspections = Inspections()
        # each container's last inspect by a resync, with its listing entry then (`_hold`)
        self._held: dict[str, tuple[Inspected, ContainerInfo]] = {}
        # the probes' verdicts come from their logs; the daemon's TaskGroup runs `probe_logs.run`
        self.probe_logs = ProbeLogs(docker, self._probe_line)

    def _pool(self) -> str:
        return self._config().desired.engines.pool

    def _vpn_names(self) -> tuple[str, ...]:
        if self._vpn_names_of is not None:
            return self._vpn_names_of()
        return self._config().desired.vpn.containers

    async def run(self) -> None:
        try:
            await self._follow()
        finally:
            self._inspections.cancel()

    async def _follow(self) -> None:
        while True:
            error: str | None = None
            try:
                await self._subscribed()
                log.warning("docker_event_stream_ended", reconnect_in_s=self._backoff)
            except DockerError as exc:
                log.warning("docker_unreachable", error=str(exc), reconnect_in_s=self._backoff)
                error = str(exc)
            self._store.telemetry.set_docker(connected=False, error=error)
            await asyncio.sleep(self._backoff * random.uniform(0.8, 1.2))
            self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)

    async def _subscribed(self) -> None:
        """Two subscriptions, so that Docker drops every other container's events on its side:
        this pool's managed containers (engines, probes) by label, the followed VPNs by name.
        The one by name is opened again, and a resync done, when the followed names change.
        Returns when either stream ends."""
        since = self.last_time_nano
        async with self._docker.events(since_nano=since, labels=pool_filters(self._pool())) as managed:
            managed_task: asyncio.Task[None] | None = None
            try:
                while True:
                    self._names_recheck.clear()
                    names = self._vpn_names()
                    async with self._named_events(since, names) as named:
                        await self.resync()
                        self._backoff = BACKOFF_FIRST_S
                        managed_task = managed_task or asyncio.create_task(self._apply_all(managed))
                        named_task = asyncio.create_task(self._apply_all(named))
                        try:
                            if await self._until_ended(names, managed_task, named_task):
                                return
                        finally:
                            named_task.cancel()
                            await asyncio.wait((named_task,))
                    since = self.last_time_nano
            finally:
                if managed_task is not None:
                    managed_task.cancel()
                    await asyncio.wait((managed_task,))

    @contextlib.asynccontextmanager
    async def _named_events(
        self, since: int | None, names: tuple[str, ...]
    ) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        if not names:  # a subscription without a name would be to every container
            yield _no_events()
            return
        async with self._docker.events(since_nano=since, names=names) as stream:
            yield stream

    async def _until_ended(self, names: tuple[str, ...], *streams: asyncio.Task[None]) -> bool:
        """True when a stream ended (raising what broke it), False when the followed names
        are no longer `names`."""
        while True:
            recheck = asyncio.create_task(self._names_recheck.wait())
            try:
                await asyncio.wait((*streams, recheck), return_when=asyncio.FIRST_COMPLETED)
            finally:
                recheck.cancel()
            self._names_recheck.clear()
            for stream in streams:
                if stream.done():
                    stream.result()
                    return True
            if self._vpn_names() != names:
                return False

    async def _apply_all(self, stream: AsyncIterator[dict[str, Any]]) -> None:
        async for event in stream:
            self.apply(event)

    def request_resync(self) -> None:
        """Resync soon (e.g. the VPN list changed), from the periodic resync's own task; the
        subscription by name then follows the VPNs named now."""
        self._resync_wanted.set()
        self._names_recheck.set()

    async def run_periodic_resync(self) -> None:
        """A resync every 45 +/- 15 s, or soon when asked (`request_resync`: full). Of the timed
        ones, every `FULL_SWEEP_EVERY`th inspects every container; the others only those the
        listing does not vouch for."""
        timed = 0
        while True:
            interval = RESYNC_INTERVAL_S + random.uniform(-RESYNC_JITTER_S, RESYNC_JITTER_S)
            wanted = False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._resync_wanted.wait()
                    wanted = True
            self._resync_wanted.clear()
            if not self._store.telemetry.docker_connected:
                continue
            timed = 0 if wanted else timed + 1
            await self.resync_quietly(full=wanted or timed % FULL_SWEEP_EVERY == 0)

    async def resync_quietly(self, full: bool = True) -> None:
        """A resync whose failure is only logged (the next one, or a reconnect, tries again)."""
        try:
            await self.resync(full)
        except DockerError as exc:
            log.warning("resync_failed", error=str(exc))
            self._store.telemetry.note_docker_error(str(exc))

    async def resync(self, full: bool = True) -> None:
        """List every engine and look up every VPN: the result replaces what the store knew.
        `full`: inspect every listed container; otherwise only those whose listing entry does
        not vouch for the inspect held from an earlier resync (`reconcilers.listing`).
        Bounded by `RESYNC_DEADLINE_S` (a DockerUnavailable past it), whatever Docker does."""
        async with self._resync_lock:
            try:
                async with asyncio.timeout(self._resync_deadline_s):
                    await self._resync(full)
            except TimeoutError as exc:
                raise DockerUnavailable(f"a resync took longer than {self._resync_deadline_s:g}s") from exc

    async def _resync(self, full: bool) -> None:
        self._resync_floor_nano = time.time_ns()
        snapshot = self._store.generation
        pool = self._pool()
        entries = await self._docker.list_containers(pool_filters(pool))
        now = time.time()
        ids = [e.id for e in entries if full or must_inspect(e, self._held_inspect(e.id), now)]
        reused = {e.id: self._held[e.id][1] for e in entries if e.id not in ids}  # before any await
        gate = asyncio.Semaphore(RESYNC_CONCURRENCY)
        unanswered: dict[str, DockerUnavailable] = {}

        async def inspect(ref: str) -> ContainerInfo | Unanswered | None:
            async with gate:
                try:
                    return await self._docker.inspect(ref)
                except DockerUnavailable as exc:
                    unanswered[ref] = exc
                    return UNANSWERED

        answers = dict(zip(ids, await asyncio.gather(*(inspect(i) for i in ids)), strict=True))
        found = [
            self._hold(entry, answers[entry.id]) if entry.id in answers else reused[entry.id]
            for entry in entries
        ]
        for gone in set(self._held) - {e.id for e in entries}:
            del self._held[gone]
        names = self._vpn_names()
        vpns = dict(zip(names, await asyncio.gather(*(inspect(n) for n in names)), strict=True))
        if len(unanswered) > 1 and len(unanswered) == len(entries) + len(names):
            # no answer about any container it listed (the listing vouched for none) nor any VPN:
            # Docker answers nothing, not one stuck container
            raise next(iter(unanswered.values()))
        for ref, exc in unanswered.items():
            # one stuck container (a hung containerd shim) must not stop the resync of the rest
            log.warning("inspect_failed", container=ref[:24], error=str(exc), hint="kept as it was known")
        listed = [i for i in found if isinstance(i, ContainerInfo)]
        infos = [info for info in listed if is_engine(info.labels, pool)]
        probe_infos = {info.id: info for info in listed if is_probe(info.labels, pool)}
        probes = [probe_observation(info) for info in probe_infos.values()]
        running = [p for p in probes if p.status == "running"]
        # a probe's verdict is level-triggered: the last line of its current run, read now
        lines = await asyncio.gather(
            *(self._last_line(p.container_id, log_since(probe_infos[p.container_id])) for p in running)
        )
        verdicts = [
            (probe, line)
            for probe, line in zip(running, lines, strict=True)
            if not isinstance(line, Unanswered)
            and not self._store.newer_than(probe.container_id, snapshot)
            and not self._store.newer_than(f"vpn:{probe.vpn}", snapshot)
        ]
        now = time.time()
        self._store.replace_engines([engine_sighting(info) for info in infos], snapshot, keep=unanswered)
        self._store.replace_probes(probes, snapshot, keep=unanswered)
        for name, info in vpns.items():
            if not isinstance(info, Unanswered) and not self._store.newer_than(f"vpn:{name}", snapshot):
                self._store.apply_vpn(name, ContainerSeen(container=vpn_container(info)), now)
        for probe, line in verdicts:
            up, why = (parse_verdict(line.text) if line is not None else None) or (None, None)
            self._report_probe(probe, up, now, error=why)
        self._follow_probes(list(probe_infos.values()), keep=unanswered)
        self._store.telemetry.note_resync()
        self._store.telemetry.set_docker(connected=True)
        log.debug("resync_done", engines=len(infos), vpns=len(vpns), inspected=len(ids), listed=len(entries))

    def _held_inspect(self, container_id: str) -> Inspected | None:
        held = self._held.get(container_id)
        return held[0] if held is not None else None

    def _hold(
        self, entry: Listed, answer: ContainerInfo | Unanswered | None
    ) -> ContainerInfo | Unanswered | None:
        """Keep an inspect with the listing entry it answered, for the next resyncs to reuse
        while the listing vouches for it (`must_inspect`)."""
        if isinstance(answer, ContainerInfo):
            known = Inspected(
                state=answer.status,
                health_text=health_text(entry.status),
                digest=entry.digest,
                started_at=answer.started_at,
            )
            self._held[entry.id] = (known, answer)
        else:
            self._held.pop(entry.id, None)
        return answer

    def apply(self, event: dict[str, Any]) -> None:
        """Apply what the event itself says at once; the follow-up inspect runs on its own
        (`Inspections`), so a hung inspect never holds up the next event."""
        self._store.telemetry.note_event()
        self.last_time_nano = max(self.last_time_nano or 0, event_time_nano(event))
        self._held.pop(str((event.get("Actor") or {}).get("ID") or event.get("id") or ""), None)
        store = self._store
        known = Known(followed=self._vpn_names(), vpns=store.vpns, engines=store.engines, probes=store.probes)
        signal = classify(event, known, self._pool(), self._resync_floor_nano)
        if isinstance(signal, Seen):
            store.observe(signal.text, signal.at)  # the history's trigger of what this event causes
        match signal:
            case Resync():
                self.request_resync()
            case Ignore() | Noted():
                pass
            case VpnHealth(vpn=vpn):
                visible = len(store.visible)
                store.apply_vpn(vpn, signal.sighting, signal.at)
                self._inspections.overtaken(f"vpn:{vpn}")
                if len(store.visible) < visible:
                    # from Docker's own event time to the visible set no longer listing them
                    self._on_hidden((time.time_ns() - signal.time_nano) / 1e9)
            case VpnStopped(vpn=vpn):
                # hide its engines at once; the inspect refines the state
                store.apply_vpn(vpn, signal.sighting, signal.at)
                self._inspect_vpn(vpn, signal.at)
            case VpnChanged(vpn=vpn):
                self._inspect_vpn(vpn, signal.at)
            case EngineGone(container_id=cid):
                self._inspections.overtaken(cid)
                store.drop_engine(cid, "gone: Docker reported its destroy")
            case EngineChanged(container_id=cid, status=status):
                self._inspections.overtaken(cid)
                if status is not None:
                    store.set_engine_status(cid, status)
                self._inspect_engine(cid)
            case ProbeGone(container_id=cid):
                self._inspections.overtaken(cid)
                self._drop_probe(cid, store.probes.get(cid), signal.at)
            case ProbeHealth(container_id=cid):
                self._inspections.overtaken(cid)
            case ProbeChanged(container_id=cid):
                self._inspections.overtaken(cid)
                self._inspect_probe(cid, signal.at)
            case _:
                assert_never(signal)

    def _inspect_vpn(self, vpn: str, at: float) -> None:
        async def inspect_vpn() -> Callable[[], None]:
            info = await self._docker.inspect(vpn)

            def apply() -> None:
                self._store.apply_vpn(vpn, ContainerSeen(container=vpn_container(info)), at)

            return apply

        self._inspections.want(f"vpn:{vpn}", inspect_vpn)

    def _inspect_engine(self, container_id: str) -> None:
        async def inspect_engine() -> Callable[[], None]:
            info = await self._docker.inspect(container_id)

            def apply() -> None:
                if info is None:
                    self._store.drop_engine(container_id, "gone: Docker has no such container")
                elif is_engine(info.labels, self._pool()):
                    self._store.upsert_engine(engine_sighting(info))

            return apply

        self._inspections.want(container_id, inspect_engine)

    def _drop_probe(self, container_id: str, known: ProbeObs | None, at: float) -> None:
        """A probe gone: no log to follow, and its VPN has no verdict from it any more."""
        self.probe_logs.drop(container_id)
        self._store.drop_probe(container_id)
        if known is not None:
            self._report_probe(known, None, at)

    def _inspect_probe(self, container_id: str, at: float) -> None:
        """A probe's run, and so the log followed for its verdicts (`_probe_line`), may have
        changed: its inspect says which run is current."""
        known = self._store.probes.get(container_id)

        async def inspect_probe() -> Callable[[], None]:
            info = await self._docker.inspect(container_id)

            def apply() -> None:
                if info is None or not is_probe(info.labels, self._pool()):
                    self._drop_probe(container_id, known, at)
                    return
                probe = probe_observation(info)
                self._store.upsert_probe(probe)
                if probe.status != "running":
                    self.probe_logs.drop(container_id)
                    self._report_probe(probe, None, at)
                elif self.probe_logs.want(container_id, probe.started_at, log_since(info)):
                    self._report_probe(probe, None, at)  # a new run: no verdict until it says

            return apply

        self._inspections.want(container_id, inspect_probe)

    async def _last_line(self, container_id: str, since: float | None) -> LogLine | Unanswered | None:
        try:
            return await self._docker.last_log_line(container_id, since=since)
        except DockerUnavailable as exc:
            log.warning("probe_log_unread", container=container_id[:12], error=str(exc))
            return UNANSWERED

    def _follow_probes(self, probes: list[ContainerInfo], keep: Collection[str]) -> None:
        """Follow the log of every running probe of the last listing, and only those."""
        listed = {p.id: p for p in probes}
        for cid in self.probe_logs.followed():
            if cid not in listed and cid not in keep:
                self.probe_logs.drop(cid)
        for info in probes:
            if info.status == "running":
                self.probe_logs.want(info.id, info.started_at, log_since(info))
            else:
                self.probe_logs.drop(info.id)

    def _probe_line(self, container_id: str, run: float | None, line: LogLine) -> None:
        """A line from a probe's log: a verdict of its current run goes to its VPN at once."""
        probe = self._store.probes.get(container_id)
        said = parse_verdict(line.text)
        if probe is None or probe.started_at != run or said is None:
            return
        visible = len(self._store.visible)
        self._report_probe(probe, said[0], time.time(), error=said[1])
        if len(self._store.visible) < visible and line.at is not None:
            # from the moment the probe wrote its verdict to the visible set no longer listing them
            self._on_hidden(time.time() - line.at)

    def _report_probe(self, probe: ProbeObs, up: bool | None, at: float, error: str | None = None) -> None:
        verdict = ProbeReported(vpn_id=probe.vpn_id, started_at=probe.started_at, up=up, error=error)
        self._store.apply_vpn(probe.vpn, verdict, at)


async def _no_events() -> AsyncIterator[dict[str, Any]]:
    """The stream of a subscription to no container: it never yields and never ends."""
    await asyncio.Future()
    yield {}
