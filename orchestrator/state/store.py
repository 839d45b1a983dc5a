"""The daemon's state, and the visible engine set derived from it on every change.

The store is the observed world: what Docker shows (engines, their facts, VPNs, tunnel
probes) and what only time tells about them (when an engine was adopted, since when it stopped
answering or stalled), plus the history of what the daemon did. Three parts of their own sit
beside it, each owning what one kind of writer changes:

- `ledger` (`ledger.py`): work in flight, the only part the executor writes;
- `demand` (`demand.py`): what the proxy said (streams, engines handed out, free-engine demand);
- `telemetry` (`telemetry.py`): what the daemon reports about itself (counters, Docker's link).

The store makes the parts and gives each its `changed` as the one callback they notify through,
so a change anywhere recomputes the visible set at once (no debounce: a VPN turning unhealthy
hides its engines within the same call that applied Docker's event) and wakes every watcher
(the reconcile loop, the readiness prober, the page's live stream). The store reads the ledger
and the demand to say what is visible and to build the planner's `Observed`; it writes them only
where the world ends their facts (an engine gone or restarted ends its streams; an engine that
exits at once is a failed create). Readers get read-only views. All of it runs on the one event
loop, so no locks are needed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field

import structlog

from orchestrator.state.demand import Demand
from orchestrator.state.history import History, HistoryEntry, HistoryKind, Observation
from orchestrator.state.journal import StreamJournal
from orchestrator.state.ledger import Ledger
from orchestrator.state.records import EngineFacts, EngineSighting
from orchestrator.state.served import LastServed
from orchestrator.state.streams import Stream
from orchestrator.state.telemetry import Telemetry
from reconcilers import visible_engines
from reconcilers.health import hidden_reason
from reconcilers.model import (
    EngineObs,
    EngineStatus,
    Observed,
    ProbeObs,
    SpecFailure,
    StallOnset,
    VpnObs,
)
from reconcilers.stalls import (
    STALL_WINDOW_S,
    StatSample,
    StreamStall,
    engine_verdict,
    is_stalled,
    streams_to_end,
)
from reconcilers.vpn import (
    ContainerSeen,
    ControlFailed,
    ControlRead,
    ForcedRestart,
    HealthReported,
    ProbeReported,
    Sighting,
    StopReported,
    Transition,
    advance,
)

log = structlog.get_logger()

EARLY_EXIT_S = 30.0  # an engine that exits this soon after it started, never having answered: a bad spec
READY_SAMPLES = 20
READY_SAMPLE_MAX_S = 120.0  # longer: an engine adopted long after it started, not a start time


@dataclass(slots=True)
class _World:
    engines: dict[str, EngineObs] = field(default_factory=dict)
    facts: dict[str, EngineFacts] = field(default_factory=dict)
    vpns: dict[str, VpnObs] = field(default_factory=dict)
    probes: dict[str, ProbeObs] = field(default_factory=dict)
    # Engines adopted from an earlier daemon: their streams are unknown, so their idle clock
    # starts when this daemon first saw them (no scale-down of a possibly busy engine at once).
    adopted_at: dict[str, float] = field(default_factory=dict)
    unready_since: dict[str, float] = field(default_factory=dict)
    # since when the config no longer wants engines on that VPN (None: behind no VPN)
    leaving_since: dict[str | None, float] = field(default_factory=dict)
    # engines whose every stream stalled, since when (they stay stalled until removed, unless
    # one of their streams progresses again); hidden from /engines
    stalled: dict[str, float] = field(default_factory=dict)
    # by VPN, when each engine behind it last turned stalled (the last STALL_WINDOW_S) and on
    # which contents: by container ID, so an engine turning stalled again and again counts once
    stall_onsets: dict[str | None, dict[str, StallOnset]] = field(default_factory=dict)
    # the image ID engines.image (`image_ref`) resolved to at the last pull, and why the last
    # pull failed
    image_ref: str | None = None
    image_id: str | None = None
    image_pulling: bool = False
    image_error: str | None = None
    vpn_heard_at: dict[str, float] = field(default_factory=dict)  # each VPN's last signal
    # how long the last engines took from their start to their first answer
    ready_after_s: deque[float] = field(default_factory=lambda: deque(maxlen=READY_SAMPLES))
    observation: Observation | None = None  # the latest thing seen: what triggers a decision


class StateStore:
    """`configured_vpns`: the VPN containers in force (empty: none); engines elsewhere are leaving
    (hidden, drained by the planner). None: every engine belongs (tests of other concerns)."""

    def __init__(
        self,
        restart_on_reconnect: Callable[[], bool] = lambda: True,
        journal: StreamJournal | None = None,
        configured_vpns: Callable[[], tuple[str, ...]] | None = None,
    ) -> None:
        self._restart_on_reconnect = restart_on_reconnect
        self._configured_vpns = configured_vpns
        self._journal = journal or StreamJournal(None)
        self._world = _World()
        self.ledger = Ledger(on_change=self.changed)
        self.demand = Demand(self._journal, on_change=self.changed)
        self.telemetry = Telemetry(on_change=self.changed)
        self.served = LastServed(self._journal, self.changed)
        self._visible: tuple[EngineObs, ...] = ()
        self.history = History()
        self._watchers: list[asyncio.Event] = []
        self._version = 0
        self.generation = 0  # bumped on every write of a container's facts, see `_touch`
        self._touched: dict[str, int] = {}
        # engines forgotten since the last `changed()`, and why: a visible one leaving /engines
        # that way is recorded as hidden with this reason (it is no longer in the world to ask)
        self._gone: dict[str, str] = {}

    # -- read-only views -----------------------------------------------------------------------
    @property
    def engines(self) -> Mapping[str, EngineObs]:
        return self._world.engines

    @property
    def facts(self) -> Mapping[str, EngineFacts]:
        return self._world.facts

    @property
    def vpns(self) -> Mapping[str, VpnObs]:
        return self._world.vpns

    @property
    def probes(self) -> Mapping[str, ProbeObs]:
        return self._world.probes

    @property
    def visible(self) -> tuple[EngineObs, ...]:
        return self._visible

    @property
    def state_error(self) -> str | None:
        """Why streams are kept in memory only (None: written through to the state directory)."""
        return self._journal.error

    @property
    def memory_only(self) -> bool:
        """Streams are kept in memory on purpose: no state directory was given."""
        return self._journal.path is None

    def typical_ready_s(self) -> float | None:
        """The median time the pool's latest engines took from start to their first answer."""
        samples = sorted(self._world.ready_after_s)
        return samples[len(samples) // 2] if samples else None

    def newer_than(self, key: str, snapshot: int) -> bool:
        return self._touched.get(key, 0) > snapshot

    def vpn_name_of(self, container_id: str) -> str | None:
        return next((n for n, v in self._world.vpns.items() if v.container_id == container_id), None)

    def engine_count(self) -> int:
        """Engines that exist or are being created, each counted once."""
        creating = self.ledger.creating
        existing = sum(1 for e in self._world.engines.values() if e.name not in creating)
        return existing + self.ledger.pending_count

    def find_engine(self, ref: str) -> EngineObs | None:
        """A managed engine by full ID, name, or an ID prefix of 12 characters or more."""
        found = self._world.engines.get(ref)
        if found is not None:
            return found
        return next(
            (
                e
                for e in self._world.engines.values()
                if e.name == ref or (len(ref) >= 12 and e.container_id.startswith(ref))
            ),
            None,
        )

    # -- the history of what the daemon did (history.py) ---------------------------------------
    def observe(self, text: str, at: float) -> None:
        """What the daemon just saw (a Docker event, a VPN's signal): the trigger of what follows."""
        self._world.observation = Observation(text=text, at=at)

    @property
    def observation(self) -> str | None:
        seen = self._world.observation
        return seen.words() if seen else None

    def record(
        self,
        kind: HistoryKind,
        target: str,
        reason: str,
        *,
        trigger: str | None = None,
        outcome: str = "done",
        engine: str | None = None,
        vpn: str | None = None,
        at: float | None = None,
    ) -> HistoryEntry:
        """Add an entry to the history (and the journal); `trigger` defaults to the latest
        observation. Wakes the watchers (the page's live stream), plans nothing by itself."""
        entry = self.history.add(
            kind,
            target,
            reason,
            at=time.time() if at is None else at,
            trigger=trigger if trigger is not None else self.observation,
            outcome=outcome,
            engine=engine,
            vpn=vpn,
        )
        self._journal.record(entry)
        self._version += 1
        for event in self._watchers:
            event.set()
        return entry

    def why_hidden(self, engine: EngineObs) -> str | None:
        """Why the engine is not on /engines, in words (None: it is)."""
        if self.ledger.is_removing(engine.container_id):
            return "being removed"
        if self.leaving(engine):
            return "draining: the configuration no longer wants engines there"
        return hidden_reason(engine, self._world.vpns, restart_on_reconnect=self._restart_on_reconnect())

    def _record_visibility(self, before: tuple[EngineObs, ...], after: tuple[EngineObs, ...]) -> None:
        """Every engine leaving /engines gets an entry with the reason: also one that left by
        disappearing from Docker (removed by hand, or while the event stream was down), which
        the store has forgotten already. (One the daemon removes is hidden first, "being
        removed", and its removal is an entry of its own.)"""
        was = {e.container_id for e in before}
        now = {e.container_id for e in after}
        for left in before:
            if left.container_id in now:
                continue
            engine = self._world.engines.get(left.container_id)
            if engine is not None:
                why = self.why_hidden(engine) or "not listed"
            else:
                engine, why = left, self._gone.get(left.container_id, "gone: no longer in Docker")
            self.record("hidden", engine.name, why, engine=engine.name, vpn=engine.vpn)
        for engine in after:
            if engine.container_id not in was:
                why = f"ready, and VPN {engine.vpn} healthy" if engine.vpn else "ready"
                self.record("shown", engine.name, why, engine=engine.name, vpn=engine.vpn)

    @property
    def vpn_heard_at(self) -> Mapping[str, float]:
        return self._world.vpn_heard_at

    # -- engines -------------------------------------------------------------------------------
    def upsert_engine(self, seen: EngineSighting) -> None:
        self._upsert_engine(seen, time.time())
        self.changed()

    def _upsert_engine(self, seen: EngineSighting, now: float) -> bool:
        """Record a sighting; False when it says nothing new of the engine (its `last_seen` moves
        alone)."""
        cid = seen.obs.container_id
        old = self._world.engines.get(cid)
        self._note_early_exit(old, seen, now)
        same_run = old is not None and old.started_at == seen.obs.started_at
        ready = bool(old and same_run and old.ready and seen.obs.status == "running")
        new = dataclasses.replace(seen.obs, ready=ready)
        self._world.engines[cid] = new
        if seen.obs.started_at is not None:
            # a restart ends every playback session; streams older than this run are over
            # (this also catches a restart while no daemon was watching)
            self._end_streams_of(cid, "engine_restarted", now, started_before=seen.obs.started_at)
        self._touch(cid)
        facts = self._world.facts.get(cid)
        self._world.facts[cid] = EngineFacts(
            ip=seen.ip,
            labels=dict(seen.labels),
            first_seen=facts.first_seen if facts else (seen.obs.created_at or now),
            last_seen=now,
            last_health_check=facts.last_health_check if facts and same_run else None,
        )
        return old != new or facts is None or facts.ip != seen.ip or facts.labels != dict(seen.labels)

    def _note_early_exit(self, old: EngineObs | None, seen: EngineSighting, now: float) -> None:
        """An engine that exited soon after it started, never having answered: its spec cannot
        run (the ledger counts it as a failed create, unless the exit was by our hand)."""
        engine = seen.obs
        if engine.status not in ("exited", "dead") or seen.ran_s is None or seen.ran_s > EARLY_EXIT_S:
            return
        if old is not None and old.ready:
            return
        why = f"engine {engine.name} exited {seen.ran_s:.0f}s after it started (exit code {seen.exit_code})"
        self.ledger.exited_early(
            engine.container_id, now, SpecFailure(spec_hash=engine.spec_hash, reason=why, at=now)
        )

    def drop_engine(self, container_id: str, why: str = "gone: no longer in Docker") -> None:
        """The engine no longer exists; `why`: the history's reason, if it was on /engines."""
        if container_id in self._world.engines:
            self._forget_engine(container_id, why)
            self.changed()

    def set_engine_status(self, container_id: str, status: EngineStatus) -> None:
        """Apply a status carried by an event before the follow-up inspect confirms it."""
        engine = self._world.engines.get(container_id)
        if engine is not None and status not in (engine.status, "running"):
            self._world.engines[container_id] = dataclasses.replace(engine, status=status, ready=False)
            self._touch(container_id)
            self.changed()

    def mark_ready(self, container_id: str, started_at: float | None) -> None:
        engine = self._world.engines.get(container_id)
        if engine is None or engine.started_at != started_at or engine.ready:
            return
        now = time.time()
        self._world.engines[container_id] = dataclasses.replace(engine, ready=True)
        self._world.unready_since.pop(container_id, None)
        self.ledger.spec_works(engine.spec_hash)
        self._set_health_check(container_id, now)
        self.observe(f"{engine.name} answered its readiness check", now)
        if started_at is not None and 0 <= now - started_at <= READY_SAMPLE_MAX_S:
            self._world.ready_after_s.append(now - started_at)
        log.info("engine_ready", container=engine.name, container_id=container_id[:12])
        self.changed()

    def mark_unready(self, container_id: str, reason: str) -> None:
        engine = self._world.engines.get(container_id)
        if engine is None or not engine.ready:
            return
        self._unready(engine, time.time())
        self.observe(f"{engine.name}: {reason}", time.time())
        log.warning("engine_unready", container=engine.name, container_id=container_id[:12], reason=reason)
        self.changed()

    def _unready(self, engine: EngineObs, since: float) -> None:
        """Hidden until its readiness check answers again; restarted if it has not after
        `ready_timeout_s` from `since`."""
        self._world.engines[engine.container_id] = dataclasses.replace(engine, ready=False)
        self._world.unready_since[engine.container_id] = since

    def note_health_check(self, container_id: str) -> None:
        """A ready engine answered its liveness check (nothing to plan: only /engines shows it)."""
        if self._set_health_check(container_id, time.time()):
            self._version += 1

    def _set_health_check(self, container_id: str, at: float) -> bool:
        facts = self._world.facts.get(container_id)
        if facts is None:
            return False
        self._world.facts[container_id] = dataclasses.replace(facts, last_health_check=at)
        return True

    def replace_engines(
        self, seen: Iterable[EngineSighting], snapshot: int, keep: Collection[str] = ()
    ) -> None:
        """Full resync: the listed containers are the truth about engines, except for those an
        event or an action changed after `snapshot` (taken before listing): those are newer;
        and those in `keep` (Docker did not say what they are now) stay as they were known."""
        listed = list(seen)
        streams = self.demand.streams
        before = (len(streams.active), len(streams.last_usage))
        ids = {s.obs.container_id for s in listed} | set(keep)
        gone = [cid for cid in self._world.engines if cid not in ids and not self.newer_than(cid, snapshot)]
        now = time.time()
        if gone:  # removed while the event stream was down (or its event was missed)
            names = ", ".join(sorted(self._world.engines[cid].name for cid in gone))
            self.observe(f"a resync: Docker's listing without {names}", now)
        for cid in gone:
            self._forget_engine(cid, "gone: not in Docker's listing")
        moved = bool(gone)
        creating = self.ledger.creating
        for sighting in listed:
            cid = sighting.obs.container_id
            if self.newer_than(cid, snapshot):
                continue
            if cid not in self._world.engines and sighting.obs.name not in creating:
                self._world.adopted_at[cid] = now
            moved = self._upsert_engine(sighting, now) or moved
        # streams restored from the journal whose engine went while no daemon was watching (an
        # engine in `keep` was listed: Docker only did not answer about it, so it is not gone)
        known = set(self._world.engines) | set(keep)
        for cid in {s.container_id for s in streams.active.values()} - known:
            self._end_streams_of(cid, "engine_gone", now)
        for cid in set(streams.last_usage) - known:
            self.demand.forget_engine(cid)
        if moved or (len(streams.active), len(streams.last_usage)) != before:
            self.changed()
        else:
            self._version += 1  # only the engines' `last_seen` moved: nothing to plan, /engines shows it

    def _touch(self, key: str) -> None:
        self.generation += 1
        self._touched[key] = self.generation

    def _forget_engine(self, container_id: str, why: str) -> None:
        self.ledger.forget(container_id)
        self._end_streams_of(container_id, "engine_gone", time.time())
        self.demand.forget_engine(container_id)
        self._world.engines.pop(container_id, None)
        self._world.facts.pop(container_id, None)
        self._world.adopted_at.pop(container_id, None)
        self._world.unready_since.pop(container_id, None)
        self._world.stalled.pop(container_id, None)
        self._touch(container_id)
        self._gone[container_id] = why  # for the history, at the next `changed()`

    # -- tunnel probes -------------------------------------------------------------------------
    def upsert_probe(self, probe: ProbeObs) -> None:
        self._world.probes[probe.container_id] = probe
        self._touch(probe.container_id)
        self.changed()

    def drop_probe(self, container_id: str) -> None:
        if self._world.probes.pop(container_id, None) is not None:
            self._touch(container_id)
            self.changed()

    def replace_probes(self, probes: Iterable[ProbeObs], snapshot: int, keep: Collection[str] = ()) -> None:
        """Full resync of the probes, as `replace_engines` for the engines."""
        listed = {p.container_id: p for p in probes}
        before = dict(self._world.probes)
        for gone in [
            c
            for c in self._world.probes
            if c not in listed and c not in keep and not self.newer_than(c, snapshot)
        ]:
            self._world.probes.pop(gone)
            self._touch(gone)
        for cid, probe in listed.items():
            if not self.newer_than(cid, snapshot):
                self._world.probes[cid] = probe
        if self._world.probes != before:
            self.changed()

    # -- VPNs ----------------------------------------------------------------------------------
    def apply_vpn(self, name: str, sighting: Sighting, at: float) -> bool:
        """Feed one signal about a VPN through its state machine; False when it did not apply."""
        previous = self._world.vpns.get(name)
        update = advance(previous, name, sighting, at)
        self._world.vpn_heard_at[name] = time.time()
        if update is None:
            return False
        seen = _sighting_words(name, sighting)
        if seen is not None:
            self.observe(seen, at)
        self._touch(f"vpn:{name}")
        if update.obs == previous and not update.transitions:
            return True  # the same reading again: nobody is woken for it
        self._world.vpns[name] = update.obs
        for transition in update.transitions:
            self._log_transition(name, transition)
            self._record_transition(name, transition)
        if update.obs.state == "healthy" and previous is not None and previous.state != "healthy":
            self._recheck_engines_of(name, at)
        self.changed()
        return True

    def _recheck_engines_of(self, vpn: str, at: float) -> None:
        """A VPN healthy again: its engines were hidden while it was not, and are listed again
        only once each has answered its readiness check since (a blip restarts none of them; one
        that never answers again is restarted `ready_timeout_s` later, as any unready engine)."""
        now = time.time()
        names = []
        for cid, engine in self._world.engines.items():
            if engine.vpn == vpn and engine.ready:
                self._unready(engine, now)
                self._touch(cid)
                names.append(engine.name)
        if names:
            self.observe(f"VPN {vpn} healthy again: {len(names)} engines must answer to be listed", at)
            log.info("engines_recheck", vpn=vpn, engines=len(names), reason="VPN healthy again")

    def _record_transition(self, name: str, t: Transition) -> None:
        match t.kind:
            case "became_unhealthy":
                self.record("vpn_unhealthy", name, f"VPN {name} became {t.state}", vpn=name)
            case "recovered":
                self.record("vpn_recovered", name, f"VPN {name} healthy again", vpn=name)
            case "reconnected":
                change = (
                    f"public IP {t.previous_ip} -> {t.public_ip}, "
                    f"forwarded port {t.previous_port} -> {t.port}"
                )
                self.record("vpn_reconnected", name, f"VPN {name} reconnected ({change})", vpn=name)
            case _:
                pass

    def forget_vpn(self, name: str) -> None:
        if self._world.vpns.pop(name, None) is not None:
            self._touch(f"vpn:{name}")
            self.changed()

    def _log_transition(self, name: str, t: Transition) -> None:
        reconnect = "VPN reconnected - triggering AceStream engine restart"
        match t.kind:
            case "recovered":
                # the same container run: a blip its engines survived, nothing is restarted
                log.info("Gluetun VPN recovered and is now healthy", vpn=name)
            case "became_unhealthy":
                log.warning("Gluetun VPN became unhealthy", vpn=name)
            case "state_changed":
                log.info("vpn_state_changed", vpn=name, state=t.state, previous=t.previous)
            case "tunnel_status":
                log.info("gluetun_tunnel_status", vpn=name, status=t.status)
            case "reconnected":
                log.info(
                    reconnect if self._restart_on_reconnect() else "vpn_reconnected",
                    vpn=name,
                    public_ip=t.public_ip,
                    previous_ip=t.previous_ip,
                    port=t.port,
                    previous_port=t.previous_port,
                    engines_with_streams="restarted once idle",
                )
            case "probe":
                verdict = {True: "tunnel up", False: "tunnel down", None: "no verdict"}[t.probe_up]
                (log.warning if t.probe_up is False or t.status else log.info)(
                    "tunnel_probe", vpn=name, verdict=verdict, error=t.status
                )
            case "forwarded_port":
                log.info("vpn_forwarded_port", vpn=name, port=t.port, previous=t.previous_port)

    # -- proxy demand --------------------------------------------------------------------------
    def restore_streams(self) -> int:
        """Read back what an earlier daemon recorded (once, before serving the proxy): its
        streams (their engines count as busy from the first plan), what `/engines` served last
        and the history. Returns how many streams are active."""
        loaded = self._journal.open()
        self.served.load(loaded.served, loaded.served_at)
        self.history.load(loaded.history)
        self.demand.load(loaded)
        return len(loaded.active)

    def _end_streams_of(
        self, container_id: str, reason: str, at: float, *, started_before: float | None = None
    ) -> None:
        engine = self._world.engines.get(container_id)
        self.demand.end_streams_of(
            container_id, reason, at, name=engine.name if engine else None, started_before=started_before
        )

    # -- stream progress (reconcilers.stalls) ---------------------------------------------------
    @property
    def stalled_engines(self) -> Mapping[str, float]:
        return self._world.stalled

    def record_progress(
        self, samples: Mapping[str, StatSample], now: float, stall_after_s: float, grace_s: float
    ) -> list[Stream]:
        """One liveness round's `stat_url` answers (by stream ID): move each stream's progress,
        mark the engines whose every stream stalled (hidden, replaced), clear those with a stream
        progressing again, and end the streams of an engine stalled for `grace_s`. Returns those."""
        self.demand.note_progress(samples, now)
        active, progress = self.demand.streams.active, self.demand.progress
        before = dict(self._world.stalled)
        by_engine: dict[str, list[bool | None]] = {}
        for stream in active.values():
            seen = progress.get(stream.id)
            # no answer yet, only its first (a baseline), or quiet but not stalled yet: no sign
            # either way (it neither stalls an engine nor clears one that stalled)
            verdict: bool | None = None
            if seen is not None and not seen.baseline:
                if is_stalled(seen, now, stall_after_s, is_live=stream.is_live):
                    verdict = True
                elif seen.progressing:
                    verdict = False  # its last answer showed progress
            by_engine.setdefault(stream.container_id, []).append(verdict)
        for cid, states in by_engine.items():
            engine = self._world.engines.get(cid)
            if engine is None:
                continue
            state = engine_verdict(states)
            if state == "stalled" and cid not in self._world.stalled:
                self._world.stalled[cid] = now
                onsets = self._world.stall_onsets.setdefault(engine.vpn, {})
                for old in [c for c, onset in onsets.items() if now - onset.at > STALL_WINDOW_S]:
                    del onsets[old]
                carried = {f"{s.key_type}:{s.key}" for s in active.values() if s.container_id == cid}
                onsets[cid] = StallOnset(container_id=cid, at=now, contents=frozenset(carried))
                log.warning(
                    "engine_stalled",
                    container=engine.name,
                    container_id=cid[:12],
                    vpn=engine.vpn,
                    streams=[s.id for s in active.values() if s.container_id == cid],
                    stall_after_s=stall_after_s,
                )
            elif state == "progressing" and self._world.stalled.pop(cid, None) is not None:
                log.info("engine_progressing_again", container=engine.name, container_id=cid[:12])
        doomed = streams_to_end(
            (
                StreamStall(
                    stream_id=s.id,
                    container_id=s.container_id,
                    progress=progress.get(s.id),
                    is_live=s.is_live,
                )
                for s in list(active.values())
            ),
            self._world.stalled,
            now,
            stall_after_s,
            grace_s,
        )
        ended = self.demand.end_streams(doomed, "stalled", now, grace_s=grace_s)
        if ended or before != self._world.stalled:
            self.changed()
        return ended

    def set_image(self, ref: str | None, image_id: str | None, error: str | None) -> None:
        """The result of a pull of engines.image `ref`: the ID its tag resolves to, or why the
        pull failed (the ID known before is kept: engines keep the image they run). All None:
        the image is not watched (`engines.pull: missing`)."""
        if error is not None and ref == self._world.image_ref:
            image_id = self._world.image_id
        new = (ref, image_id, error)
        if new == (self._world.image_ref, self._world.image_id, self._world.image_error):
            return
        self._world.image_ref, self._world.image_id, self._world.image_error = new
        self.changed()

    def set_image_pulling(self, pulling: bool) -> None:
        """A pull of engines.image is due or under way (a rollout waits for it) or over."""
        if pulling != self._world.image_pulling:
            self._world.image_pulling = pulling
            self.changed()

    @property
    def image_id(self) -> str | None:
        return self._world.image_id

    @property
    def image_ref(self) -> str | None:
        return self._world.image_ref

    @property
    def image_error(self) -> str | None:
        return self._world.image_error

    def desired_image_id(self, image: str) -> str | None:
        """The image ID engines of `image` should run (None: not watched or not known yet)."""
        return self._world.image_id if self._world.image_ref == image else None

    # -- derived -------------------------------------------------------------------------------
    def engine_with_streams(self, engine: EngineObs, now: float) -> EngineObs:
        """The engine as the planner sees it: an engine handed out by provisioning counts as
        busy until its stream is reported; an adopted one as used when it was adopted."""
        cid = engine.container_id
        held = 1 if cid in self.demand.held_engines(now) else 0
        streams = self.demand.streams
        used = [t for t in (streams.last_usage.get(cid), self._world.adopted_at.get(cid)) if t]
        unready = [t for t in (self._world.unready_since.get(cid), self._world.adopted_at.get(cid)) if t]
        stalled_since = self._world.stalled.get(cid)
        mine = [s.id for s in streams.active.values() if s.container_id == cid]
        progress = self.demand.progress
        return dataclasses.replace(
            engine,
            streams=streams.count(cid) + held,
            last_stream_usage=max(used) if used else None,
            unready_since=None if engine.ready or not unready else max(unready),
            stalled_since=stalled_since,
            stalled_streams=tuple(mine) if stalled_since is not None else (),
            progressing=any(progress[i].progressing for i in mine if i in progress),
            delivered_at=max(
                (m for m in (progress[i].moved_at for i in mine if i in progress) if m is not None),
                default=None,
            ),
        )

    def observed(self, now: float | None = None) -> Observed:
        now = time.time() if now is None else now
        ledger = self.ledger
        creating = ledger.creating
        return Observed(
            engines=tuple(
                self.engine_with_streams(e, now)
                for e in self._world.engines.values()
                if e.name not in creating
            ),
            probes=tuple(self._world.probes.values()),
            pending_probes=ledger.pending_probes,
            extra_demand=self.demand.extra_demand(now),
            vpns=dict(self._world.vpns),
            pending_creates=ledger.pending_creates,
            busy_containers=ledger.busy,
            cooldowns=ledger.cooldowns(now),
            blocked_slots=ledger.blocked_slots(now),
            removing=ledger.removing,
            create_blocked_until=ledger.create_blocked_until,
            spec_failure=ledger.spec_failure,
            leaving_since=dict(self._world.leaving_since),
            recent_stalls={
                k: tuple(onset for onset in v.values() if now - onset.at <= STALL_WINDOW_S)
                for k, v in self._world.stall_onsets.items()
            },
            image_error=self._world.image_error,
            image_pulling=self._world.image_pulling,
        )

    def leaving(self, engine: EngineObs) -> bool:
        """The config in force no longer wants it where it is: it takes no new stream."""
        if self._configured_vpns is None:
            return False
        configured = self._configured_vpns()
        return engine.vpn not in configured if engine.vpn is not None else bool(configured)

    def _track_leaving(self) -> None:
        now = time.time()
        leaving = {e.vpn for e in self._world.engines.values() if self.leaving(e)}
        for key in set(self._world.leaving_since) - leaving:
            del self._world.leaving_since[key]
        for key in leaving:
            self._world.leaving_since.setdefault(key, now)

    @property
    def version(self) -> int:
        """Bumped on every change, of the world or of a part: lets readers cache what they derive."""
        return self._version + self.ledger.version + self.demand.version + self.telemetry.version

    def changed(self) -> None:
        self._version += 1
        self._track_leaving()
        visible = tuple(
            e
            for e in visible_engines(
                tuple(self._world.engines.values()),
                self._world.vpns,
                restart_on_reconnect=self._restart_on_reconnect(),
            )
            if not self.ledger.is_removing(e.container_id)
            and not self.leaving(e)
            and e.container_id not in self._world.stalled
        )
        if visible != self._visible:
            before, self._visible = self._visible, visible
            self._record_visibility(before, visible)
        self._gone.clear()
        for event in self._watchers:
            event.set()

    def watch(self) -> asyncio.Event:
        """An event set on every change from now on; the watcher clears it when it looks."""
        event = asyncio.Event()
        event.set()
        self._watchers.append(event)
        return event

    def unwatch(self, event: asyncio.Event) -> None:
        """Stop waking `event` (a watcher that ends, e.g. a page's live stream closing)."""
        if event in self._watchers:
            self._watchers.remove(event)


def _sighting_words(name: str, sighting: Sighting) -> str | None:
    """A VPN signal as a history trigger says it (None: not worth naming)."""
    match sighting:
        case HealthReported(health=health):
            return f"Docker `health_status: {health}` of {name}"
        case StopReported(action=action):
            return f"Docker `{action}` of {name}"
        case ContainerSeen(container=None):
            return f"no container named {name}"
        case ContainerSeen(container=c) if c is not None:
            return f"docker inspect of {name}: {c.status}, health {c.health or 'none'}"
        case ControlRead(status=status, public_ip=ip):
            return f"{name}'s control server: tunnel {status or 'unknown'}, public IP {ip or 'none'}"
        case ControlFailed(error=error):
            return f"{name}'s control server did not answer ({error})"
        case ProbeReported(up=up, error=error):
            verdict = {True: "up", False: "down", None: "no verdict"}[up]
            return f"tunnel probe of {name}: {verdict}" + (f" ({error})" if error else "")
        case ForcedRestart():
            return None
    return None
