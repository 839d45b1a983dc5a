"""The vocabulary shared by the planner and the daemon: desired state, observed state, actions.

Everything here is plain frozen data. The daemon converts Docker's JSON and the operator's
YAML into these types once, at its edges; the planner only ever sees these. Times are POSIX
seconds (floats) taken from Docker's own clock where Docker reports them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

VpnMode = Literal["none", "single", "redundant"]
VpnState = Literal["healthy", "unhealthy", "starting", "stopped", "missing"]
EngineStatus = Literal["created", "running", "paused", "restarting", "removing", "exited", "dead"]

# The labels that say whose a container is: written by the daemon's Docker edge, read by
# `reconcilers.events` to tell its engines and probes from everything else on the host.
MANAGED = "orchestrator.managed"
MANAGED_VALUE = "acestream"
POOL = "orchestrator.pool"
ROLE = "orchestrator.role"
PROBE_ROLE = "probe"

# Ports an engine listens on inside its own network namespace when it is not behind a VPN.
DEFAULT_HTTP_PORT = 6878
DEFAULT_API_PORT = 62062
DEFAULT_P2P_PORT = 8621
# The engine documents no HTTPS default; this one is ours, distinct from every port above.
DEFAULT_HTTPS_PORT = 6879
# What an engine takes when it is not told otherwise: never handed out behind a VPN, where a
# port left at its default would clash with the next engine in the namespace.
ENGINE_DEFAULT_PORTS = frozenset({DEFAULT_HTTP_PORT, DEFAULT_API_PORT, DEFAULT_P2P_PORT})


@dataclass(frozen=True, slots=True, kw_only=True)
class PortRange:
    """An inclusive range of TCP ports, e.g. 19000-19999."""

    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start + 1

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


@dataclass(frozen=True, slots=True, kw_only=True)
class LaunchTemplate:
    """How an engine image is started: the container's entrypoint, command and environment, with
    `{http_port}`, `{https_port}`, `{api_port}`, `{p2p_port}` and `{cache_limit_gb}` filled in per
    engine (`orchestrator.config.launch` holds the presets for the known image families)."""

    preset: str
    entrypoint: tuple[str, ...] | None = None
    command: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineSpec:
    """What every engine looks like and how many the operator wants."""

    image: str
    launch: LaunchTemplate = LaunchTemplate(preset="custom")
    cache_limit_gb: int = 1
    pool: str = "default"
    min_replicas: int = 3
    min_free: int = 1
    max_replicas: int = 20
    idle_ttl_s: float = 600.0
    ready_timeout_s: float = 120.0
    host_port_range: PortRange = PortRange(start=19000, end=19999)
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    # Docker's json-file log driver bounds: each engine keeps at most size x files of log
    log_max_size: str = "10m"
    log_max_files: int = 3
    # an engine whose every stream made no progress this long is stalled (reconcilers.stalls)
    stall_after_s: float = 60.0
    # its streams end (reason `stalled`) this long after, unless the proxy ended them first
    stall_grace_s: float = 120.0
    # idle engines older than this are replaced, one at a time (None: never)
    max_age_s: float | None = None
    # the image ID the tag resolved to at the last pull (None: not watched, `engines.pull` is
    # `missing`): engines running another image are rolled over to it
    image_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TunnelProbe:
    """One small container per VPN, in the VPN's network namespace, whose dial loop dials
    `host:port` over TCP: from in there only the tunnel leads out, so failing dials are a dead
    tunnel, seen within `interval_s + retries * timeout_s` (Docker's own verdict on Gluetun lags
    by minutes)."""

    host: str
    port: int
    interval_s: float = 1.5
    timeout_s: float = 1.0
    retries: int = 2
    image: str | None = None  # None: the VPN container's own image (Gluetun's has sh and nc)


@dataclass(frozen=True, slots=True, kw_only=True)
class VpnSpec:
    """Which Gluetun containers the engines are routed through, and how failures are handled."""

    mode: VpnMode = "none"
    containers: tuple[str, ...] = ()
    port_range: PortRange = PortRange(start=19000, end=19999)
    restart_engines_on_reconnect: bool = True
    unhealthy_restart_timeout_s: float = 300.0
    wait_healthy_s: float = 60.0
    drain_grace_s: float = 1800.0  # an engine with streams on a VPN dropped from the list
    probe: TunnelProbe | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Desired:
    engines: EngineSpec
    vpn: VpnSpec


@dataclass(frozen=True, slots=True, kw_only=True)
class EnginePorts:
    """The ports one engine listens on. `host_http` is set only for engines published on the
    host; `https` is 0 for an engine of the earlier three-port layout (read from its labels)."""

    http: int
    https: int
    api: int
    p2p: int
    host_http: int | None = None

    def listening(self) -> frozenset[int]:
        """Every port it binds in its network namespace."""
        return frozenset(p for p in (self.http, self.https, self.api, self.p2p) if p)


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineObs:
    """One managed engine container as the daemon last saw it (labels included)."""

    container_id: str
    name: str
    status: EngineStatus
    started_at: float | None
    slot: int
    ports: EnginePorts
    spec_hash: str
    vpn: str | None = None
    vpn_id: str | None = None
    forwarded: bool = False
    ready: bool = False
    streams: int = 0
    last_stream_usage: float | None = None
    created_at: float = 0.0
    # when it stopped answering (or was adopted unanswered); None: since it started
    unready_since: float | None = None
    # since when every stream it carried made no progress (it stays stalled once they end, until
    # it is removed); None: not stalled. `stalled_streams`: the IDs of those still active
    stalled_since: float | None = None
    stalled_streams: tuple[str, ...] = ()
    progressing: bool = False  # at least one of its streams progresses
    # the last stat answer of one of its streams that showed progress (something downloaded,
    # with peers or speed): evidence that it delivers, whatever its API or its VPN's probe say
    delivered_at: float | None = None
    image_id: str | None = None  # the image the container runs (Docker's image ID)


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlProblem:
    """Why the daemon cannot read (part of) a Gluetun control server, in the words of the Gluetun
    setting to change. `code` is a `ProblemCode` of the gluetun_* kind."""

    code: Literal["gluetun_auth_required", "gluetun_auth_rejected", "gluetun_route_not_allowed"]
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class VpnObs:
    """One Gluetun container as the daemon last saw it, from every signal it has.

    `state` is the verdict the planner acts on; `docker_state` is Docker's view alone, which the
    tunnel probe replaces while it has a verdict (`probe_up`) and the control server overrules
    while it says the tunnel is not running (`tunnel_down`). The rules are `reconcilers.vpn`'s."""

    name: str
    container_id: str | None
    state: VpnState
    state_since: float
    started_at: float | None = None
    reconnected_at: float | None = None
    forwarded_port: int | None = None
    last_forced_restart: float | None = None
    # False from the moment the VPN (re)turns healthy until its control server has been asked
    # for the forwarded port, so the first engine placed on it can be the forwarded one.
    port_known: bool = True
    ip: str | None = None
    image: str | None = None  # the container's image ID (what its tunnel probe runs)
    running: bool = False  # the container's process runs (a crashed one is `unhealthy` too)
    docker_state: VpnState | None = None
    tunnel_down: bool = False  # the control server says the tunnel is not running
    public_ip: str | None = None  # the last one known (an empty answer means "reconnecting")
    last_port: int | None = None  # the last forwarded port other than 0 read in this run
    control_status: str | None = None
    control_error: str | None = None
    # what the operator must change in Gluetun's settings so the daemon can read its control
    # server (a 401 diagnosed per release line); never a sign the tunnel is down
    control_problem: ControlProblem | None = None
    control_failed_since: float | None = None  # the control server has not answered since
    control_unreachable_since: float | None = None  # ... not even a TCP connection (not a 401)
    # its control server answered (any HTTP reply, a 401 too) in the container's current run:
    # without that, its silence is no sign Gluetun is stuck
    control_answered: bool = False
    probe_up: bool | None = None  # the tunnel probe's last verdict; None: none yet (or no probe)
    probe_error: str | None = None  # the probe cannot run (its image lacks sh or nc)
    forced_restarts: int = 0  # restarts the daemon forced since the VPN was last healthy
    # when a stop/kill event for it came: an exit after that, until it runs again, is on purpose
    stop_requested_at: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingCreate:
    """An engine creation that is under way; it holds its slot until it lands or fails."""

    vpn: str | None
    slot: int
    forwarded: bool
    ports: EnginePorts | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeObs:
    """A tunnel-probe container (labels included), as the daemon last saw it."""

    container_id: str
    vpn: str
    vpn_id: str
    status: EngineStatus
    started_at: float | None
    spec_hash: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SpecFailure:
    """Engines of this spec cannot be made to run: a create Docker refused for good (no such
    image, an invalid option), or an engine that exited soon after it started. A rollout to that
    spec stops until the YAML changes again (or an engine of it turns ready after all)."""

    spec_hash: str
    reason: str
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class StallOnset:
    """An engine turned stalled (`reconcilers.stalls`): which one (container ID), when, and the
    contents (`key_type:key`) of the streams it carried then."""

    container_id: str
    at: float
    contents: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
class Observed:
    engines: tuple[EngineObs, ...] = ()
    probes: tuple[ProbeObs, ...] = ()
    pending_probes: frozenset[str] = frozenset()  # VPNs whose probe is being created
    vpns: Mapping[str, VpnObs] = field(default_factory=dict)
    pending_creates: tuple[PendingCreate, ...] = ()
    busy_containers: frozenset[str] = frozenset()
    removing: frozenset[str] = frozenset()  # busy being removed: they hold a slot, count for nothing
    create_blocked_until: float | None = None
    extra_demand: int = 0  # free engines a proxy asked for right now, beyond min_free
    # containers whose last action failed: left alone until then (no retry hot loop)
    cooldowns: Mapping[str, float] = field(default_factory=dict)
    # (vpn, slot) whose ports something else holds (e.g. a host port in use): not handed out
    blocked_slots: frozenset[tuple[str | None, int]] = frozenset()
    spec_failure: SpecFailure | None = None
    # since when the engines of a VPN (None: those behind none) are no longer wanted there
    leaving_since: Mapping[str | None, float] = field(default_factory=dict)
    # which engine behind each VPN (None: behind none) turned stalled lately, and when
    recent_stalls: Mapping[str | None, tuple[StallOnset, ...]] = field(default_factory=dict)
    # why the engine image could not be pulled (None: pulled, or not watched)
    image_error: str | None = None
    # a pull of the engine image is due or under way: a rollout waits for the ID it finds
    image_pulling: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateEngine:
    vpn: str | None
    vpn_id: str | None
    slot: int
    ports: EnginePorts
    forwarded: bool
    spec_hash: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoveEngine:
    container_id: str
    reason: str
    # an idle engine the pool no longer needs is hidden from /engines this long before it goes: a
    # proxy that picked it from a listing it read just before may still report a stream on it,
    # which keeps it (`RETIRE_GRACE_S`); 0 for an engine that cannot serve
    grace_s: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartEngine:
    container_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RecreateEngine:
    """Remove an engine and create its replacement in the same slot, as one step."""

    container_id: str
    create: CreateEngine
    reason: str
    grace_s: float = 0.0  # as RemoveEngine's: a listed idle engine is hidden this long first


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartVpn:
    name: str
    container_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateProbe:
    vpn: str
    vpn_id: str
    image: str
    spec_hash: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoveProbe:
    container_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartProbe:
    """Restart a probe left in its VPN's dead namespace (the VPN restarted in place)."""

    container_id: str
    reason: str


Action = (
    CreateEngine
    | RemoveEngine
    | RestartEngine
    | RecreateEngine
    | RestartVpn
    | CreateProbe
    | RemoveProbe
    | RestartProbe
)


ProblemCode = Literal[
    "vpn_missing",
    "vpn_stopped",
    "vpn_unhealthy",
    "vpn_disconnected",
    "vpn_wait_timeout",
    "engines_not_answering",
    "max_capacity",
    "circuit_breaker",
    "ports_exhausted",
    "probe_broken",
    "rollout_paused",
    "draining",
    "forwarded_port_taken",
    "gluetun_auth_required",
    "gluetun_auth_rejected",
    "gluetun_route_not_allowed",
    "engine_stalled",
    "vpn_exit_stalling",
    "image_pull_failed",
    "restart_held",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """A reason the world cannot reach the desired state right now, shown on /status."""

    code: ProblemCode
    message: str
    vpn: str | None = None
    engine: str | None = None  # the engine's container name, where one engine is concerned
    streams: tuple[str, ...] = ()  # the stream IDs concerned


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    actions: tuple[Action, ...] = ()
    wake_at: float | None = None
    problems: tuple[Problem, ...] = ()
    target: int = 0
