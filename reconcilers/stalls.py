"""Stalls: a stream whose engine answers but no longer delivers, told from one that works.

An engine's HTTP API answering says nothing of its P2P side: the most common failure in the
field is an engine that answers but has no peers and downloads nothing (a dead swarm, a VPN exit
that starves P2P). The daemon already asks each stream's `stat_url` every liveness round; these
rules read those answers:

- `advance`: one answer moves a stream's `Progress` (progress = something downloaded since the
  last answer, with peers or a download speed; the first answer this process gets for a stream
  has nothing to compare with: it is a baseline, counted as progress when it shows peers or
  speed, and never a stall by itself);
- `is_stalled`: the last answer, one after the baseline, showed no progress, and none has for
  `stall_after_s` (counted from the last answer that showed some, or from the baseline; never
  from the stream's start: a stream read back from the journal after a daemon restart started
  long before this process saw anything of it);
- `engine_verdict`: an engine is stalled only when every stream it carries is; one progressing
  stream keeps it untouched;
- `streams_to_end`: a stalled engine's streams end (reason `stalled`) once they have been
  stalled for the grace beyond `stall_after_s`, unless the proxy ended them first;
- `exit_stalling`: a VPN whose engines stall while another VPN's progress, or with
  `REPEATED_STALLS` distinct engines behind it turned stalled in a window on as many distinct
  contents, is reported (`vpn_exit_stalling`);
- `tunnel_restart_due`: whether to ask that VPN's Gluetun for another exit (off by default).

Pure: plain data in, plain data out; the store keeps the state, the planner acts on the verdict.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from reconcilers.model import StallOnset

# distinct engines behind one VPN turned stalled within STALL_WINDOW_S, on as many distinct
# contents: its exit is suspect (one engine turning stalled again and again, or one dead content
# the proxy tried on engine after engine, is one swarm, counted once)
REPEATED_STALLS = 3
STALL_WINDOW_S = 1800.0


@dataclass(frozen=True, slots=True, kw_only=True)
class StatSample:
    """What one `stat_url` answer says of the P2P side (None: the field was missing)."""

    peers: int | None = None
    speed_down: float | None = None
    downloaded: int | None = None

    @property
    def moving(self) -> bool:
        return (self.peers or 0) > 0 or (self.speed_down or 0) > 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    """A stream's progress as its engine last reported it."""

    sample: StatSample
    sampled_at: float
    progress_at: float  # the last answer that showed progress (or the baseline)
    progressing: bool  # the last answer showed progress
    # the only answer this process has had for the stream: nothing to compare with, no verdict
    baseline: bool = False
    moved_at: float | None = None  # the last answer that showed progress (None: none has)


def advance(prev: Progress | None, sample: StatSample, now: float) -> Progress:
    """The stream's progress after one more answer. The first (`prev` None) is the baseline:
    progress is counted from it, whatever the stream's start (after a daemon restart, a stream
    read back from the journal may have started an hour before anything was seen of it)."""
    if prev is None:
        moving = sample.moving
        return Progress(
            sample=sample,
            sampled_at=now,
            progress_at=now,
            progressing=moving,
            baseline=True,
            moved_at=now if moving else None,
        )
    grew = (
        sample.downloaded > prev.sample.downloaded
        if sample.downloaded is not None and prev.sample.downloaded is not None
        else True  # an engine that does not report bytes: peers or speed decide
    )
    moved = sample.moving and grew
    since = now if moved else prev.progress_at
    return Progress(
        sample=sample,
        sampled_at=now,
        progress_at=since,
        progressing=moved,
        moved_at=now if moved else prev.moved_at,
    )


def delivers(delivered_at: float | None, now: float, within_s: float) -> bool:
    """Whether an engine showed progress on one of its streams in the last `within_s`: evidence
    that it serves, which a restart must not overrule on weaker signs (a slow API answer, a
    tunnel probe that cannot reach its target)."""
    return delivered_at is not None and now - delivered_at < within_s


def is_stalled(progress: Progress | None, now: float, stall_after_s: float, *, is_live: bool = True) -> bool:
    """No progress for `stall_after_s`: the last answer showed none and nothing did since then.
    Never on the baseline alone (no answer yet, or only the first: no verdict), and never for a
    VOD stream (`is_live` False): its file all downloaded, or filling the engine's cache, the
    engine downloads nothing more while the viewer plays on."""
    return (
        is_live
        and progress is not None
        and not progress.baseline
        and not progress.progressing
        and now - progress.progress_at >= stall_after_s
    )


EngineVerdict = Literal["idle", "progressing", "stalled", "unknown"]


def engine_verdict(stalled: Sequence[bool | None]) -> EngineVerdict:
    """From its streams' states (True: stalled, False: progressing, None: no answer yet)."""
    if not stalled:
        return "idle"
    if any(s is False for s in stalled):
        return "progressing"
    if all(s is True for s in stalled):
        return "stalled"
    return "unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamStall:
    """One active stream as the stall rules see it."""

    stream_id: str
    container_id: str
    progress: Progress | None
    is_live: bool = True


def streams_to_end(
    streams: Iterable[StreamStall],
    stalled_engines: Mapping[str, float],
    now: float,
    stall_after_s: float,
    grace_s: float,
) -> list[str]:
    """Stalled streams of an engine that has been stalled (all its streams) for `grace_s`: they
    end with reason `stalled`. A stream on an engine that still progresses is never ended here,
    nor one not judged stalled itself (reported on the engine after it stalled, no answer yet)."""
    return [
        s.stream_id
        for s in streams
        if s.container_id in stalled_engines
        and now - stalled_engines[s.container_id] >= grace_s
        and is_stalled(s.progress, now, stall_after_s, is_live=s.is_live)
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class VpnStalls:
    """The evidence about one VPN's exit: its engines now, and the stalls seen lately."""

    vpn: str
    stalled_engines: tuple[str, ...] = ()  # names
    progressing_engines: tuple[str, ...] = ()
    recent_stalls: tuple[StallOnset, ...] = ()  # which engine behind it turned stalled, when


@dataclass(frozen=True, slots=True, kw_only=True)
class ExitVerdict:
    vpn: str
    message: str


def exit_stalling(vpns: Sequence[VpnStalls], now: float) -> list[ExitVerdict]:
    """VPNs whose exit looks like it starves P2P: all of its engines with streams stall while
    another VPN's engines progress, or `REPEATED_STALLS` distinct engines turned stalled within
    `STALL_WINDOW_S` on at least as many distinct contents (one engine stalling again and
    again counts once, and so does one dead content tried on engine after engine: one swarm)."""
    others_progress = {v.vpn: [o.vpn for o in vpns if o.vpn != v.vpn and o.progressing_engines] for v in vpns}
    found: list[ExitVerdict] = []
    for v in vpns:
        window = [s for s in v.recent_stalls if now - s.at <= STALL_WINDOW_S]
        recent = {s.container_id for s in window}
        contents = set().union(*(s.contents for s in window))
        if v.stalled_engines and not v.progressing_engines and others_progress[v.vpn]:
            found.append(
                ExitVerdict(
                    vpn=v.vpn,
                    message=f"engines behind VPN '{v.vpn}' stall ({', '.join(v.stalled_engines)}) while "
                    f"those behind {', '.join(repr(o) for o in others_progress[v.vpn])} progress: "
                    "its exit may starve P2P",
                )
            )
        elif len(recent) >= REPEATED_STALLS and len(contents) >= REPEATED_STALLS:
            found.append(
                ExitVerdict(
                    vpn=v.vpn,
                    message=f"{len(recent)} engines behind VPN '{v.vpn}' stalled within "
                    f"{STALL_WINDOW_S:g}s, on {len(contents)} different contents: its exit may starve P2P",
                )
            )
    return found


def tunnel_restart_due(
    *, stalling: bool, progressing: bool, last_restart: float | None, now: float, interval_s: float
) -> bool:
    """Restart a VPN's tunnel (Gluetun's control server, never the container) to get another
    exit: only while its exit is reported stalling, only when no engine behind it progresses
    (a restart renegotiates the tunnel under every engine of the VPN, and a new exit restarts
    them), and at most once per `interval_s`."""
    if not stalling or progressing:
        return False
    return last_restart is None or now - last_restart >= interval_s
