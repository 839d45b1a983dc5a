"""The real-tunnel lane: a Gluetun stand-in with a real (userspace) WireGuard tunnel, on local Docker.

Every image is built from Debian's packages by testbed/realvpn/build-images.sh: WireGuard servers
(wireguard-go), a target host, and the Gluetun stand-in (images/gluetun: wireguard-go client, kill
switch, Gluetun's health timing, the control server of testbed/gluetun per release line). With
``REALVPN_GLUETUN_IMAGE=<image>`` the same bed runs a real Gluetun image instead (the variables it
reads are set for both; the stand-in ignores the auth TOML, a real Gluetun the ``STANDIN_*`` ones).

Layout of one bed (names start with a run prefix such as ``rv-1a2b3c``; X is a free /22)::

    <p>-vpn   10.213.X.0/24    bridge: WireGuard servers .2, .3 ... and Gluetuns .10, .11 ...
    <p>-inet  10.213.X+1.0/24  bridge, --internal: the "internet"; servers .2, .3 ..., target .10
    <p>-wg1   wg0 10.213.X+2.1/24, peer <p>-gluetun1 = 10.213.X+2.2/32, NAT to <p>-inet
    <p>-wg2   wg0 10.213.X+3.1/24, peer <p>-gluetun2 = 10.213.X+3.2/32, NAT to <p>-inet
    <p>-target   busybox httpd :80 (/cgi-bin/whoami answers the caller's address), dnsmasq :53

The target shares no network with Gluetun: Gluetun's firewall lets its own subnet in and out
directly, so only a target behind the tunnel proves the tunnel carries traffic. Whatever runs in a
Gluetun's namespace (``--network container:<gluetun>``) reaches the target through the tunnel only,
and the target sees it as that Gluetun's WireGuard server (``exit_ip``).

Each Gluetun has its own WireGuard server (one peer each) rather than one server with two peers:
the daemon's redundant mode needs one VPN to fail while the other stays up, and stopping a server
is exactly "this VPN's tunnel is gone" (a peer removed from a shared server would be a different
failure, and the shared server would be a single point that takes both down).

Every container and network carries the bed's label (default ``acestream-orchestrator-test=1``,
or ``$REALVPN_LABEL``), ``acestream-orchestrator-realvpn=1``, the run prefix and the owning
process; ``down()`` removes them, and leftovers of a killed run (same labels, owner process gone).

"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testkit.harness import containers, docker, inspect, wait_for

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = "testbed/realvpn/build-images.sh"

NS = "acestream-orchestrator-test"
BASE_IMAGE = f"{NS}/gt-base:bookworm"
STANDIN_IMAGE = f"{NS}/gt-gluetun:tunnel"
# opt-in: a real Gluetun image (e.g. qmcgaw/gluetun:v3.39.1 loaded locally) runs the same tests
REAL_IMAGE_VAR = "REALVPN_GLUETUN_IMAGE"
REAL_GLUETUN_IMAGE = os.environ.get(REAL_IMAGE_VAR) or None
GLUETUN_IMAGE = REAL_GLUETUN_IMAGE or STANDIN_IMAGE
# the stand-in's control server answers as this release line (testbed/gluetun STANDIN_RELEASE)
STANDIN_RELEASE = "v3.39"
# the stand-in's periodic small check, scaled down for the tests (upstream: every 60 s, up to 10
# tries of 5 s); the start-up check keeps Gluetun's 6 s + 5 s per failed attempt
STANDIN_HEALTH = {
    "STANDIN_HEALTH_SMALL_PERIOD": "5s",
    "STANDIN_HEALTH_SMALL_TRIES": "1",
    "STANDIN_HEALTH_SMALL_TIMEOUT": "2s",
}
WGSERVER_IMAGE = f"{NS}/gt-wgserver:latest"
TARGET_IMAGE = f"{NS}/gt-target:latest"
IMAGES = (BASE_IMAGE, GLUETUN_IMAGE, WGSERVER_IMAGE, TARGET_IMAGE)

DEFAULT_LABEL = f"{NS}=1"
REALVPN = "acestream-orchestrator-realvpn"
RUN_LABEL = f"{REALVPN}.run"
OWNER_LABEL = f"{REALVPN}.owner"
WORKDIR_LABEL = f"{REALVPN}.workdir"
WORKDIR_PREFIX = "realvpn-"

CONTROL_PORT = 8000
WG_PORT = 51820
TARGET_PORT = 80
# Routes v3.39.1 serves; a role naming one it does not serve (e.g. GET /v1/portforward) stops
# Gluetun at start. v3.39.1 reads roles only from this TOML file (no AUTH_DEFAULT_ROLE before v3.41).
CLIENT_ROUTES = (
    "GET /v1/version",
    "GET /v1/vpn/status",
    "PUT /v1/vpn/status",
    "GET /v1/vpn/settings",
    "GET /v1/openvpn/status",
    "GET /v1/openvpn/portforwarded",
    "GET /v1/dns/status",
    "GET /v1/updater/status",
    "GET /v1/publicip/ip",
)
# Candidate /22 blocks: 10.213.0.0/16 in steps of 4 (third octet 0, 4, ... 252)
BLOCK_POOL = ipaddress.IPv4Network("10.213.0.0/16")
MAX_GLUETUNS = 8  # servers take .2-.9 of <p>-vpn, Gluetuns .10 on
_KEY_DEFAULT: Any = object()


def missing_prerequisites() -> str | None:
    """Why the bed cannot run here at all (a sentence for pytest.skip): only an opt-in real
    Gluetun image (REALVPN_GLUETUN_IMAGE) that is named but not present; None otherwise."""
    if (
        REAL_GLUETUN_IMAGE
        and shutil.which("docker")
        and not docker("images", "-q", REAL_GLUETUN_IMAGE, check=False)
    ):
        return f"{REAL_IMAGE_VAR}={REAL_GLUETUN_IMAGE} is not an image on this Docker engine"
    return None


def is_standin() -> bool:
    """True when the bed runs the Gluetun stand-in (the default), False with a real image."""
    return REAL_GLUETUN_IMAGE is None


def broken_prerequisites() -> str | None:
    """What is wrong on this machine (the lane then fails, it never skips: `make test` builds
    everything it needs from Debian's packages)."""
    if shutil.which("docker") is None:
        return "no docker CLI"
    done = subprocess.run(
        ["docker", "info", "-f", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    if done.returncode != 0:
        return f"no Docker engine answers ({done.stderr.strip()}); run scripts/ensure-docker.sh"
    if not Path("/dev/net/tun").exists():
        return "/dev/net/tun is absent (Gluetun and wireguard-go need it)"
    missing = [i for i in IMAGES if not docker("images", "-q", i, check=False)]
    if missing:
        return f"images missing: {', '.join(missing)}; run {BUILD_SCRIPT}"
    return None


def _split_label(label: str) -> tuple[str, str]:
    key, sep, value = label.partition("=")
    if not key or not sep:
        raise ValueError(f"label must be KEY=VALUE, got {label!r}")
    return key, value


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_gone(owner: str | None) -> bool:
    """True when `owner` names a process of this host that no longer runs."""
    if not owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def remove_leftovers(label: str = DEFAULT_LABEL, *, everything: bool = False) -> list[str]:
    """Remove realvpn containers/networks carrying `label` whose owner process is gone
    (all of them with `everything`); returns what was removed."""
    removed: list[str] = []
    filters = [f"label={label}", f"label={REALVPN}=1"]
    ids = containers(*filters)
    workdirs: set[str] = set()
    if ids:
        victims = []
        for info in json.loads(docker("inspect", *ids, check=False) or "[]"):
            labels = info["Config"].get("Labels") or {}
            if everything or _owner_gone(labels.get(OWNER_LABEL)):
                victims.append(info["Id"])
                removed.append(info["Name"].lstrip("/"))
                if labels.get(WORKDIR_LABEL):
                    workdirs.add(labels[WORKDIR_LABEL])
        if victims:
            docker("rm", "-f", *victims, check=False, timeout=120)
    nets = docker("network", "ls", "-q", *(f"--filter={f}" for f in filters), check=False).split()
    if nets:
        for info in json.loads(docker("network", "inspect", *nets, check=False) or "[]"):
            labels = info.get("Labels") or {}
            if everything or _owner_gone(labels.get(OWNER_LABEL)):
                docker("network", "rm", info["Id"], check=False)
                removed.append(info["Name"])
                if labels.get(WORKDIR_LABEL):
                    workdirs.add(labels[WORKDIR_LABEL])
    tmp = Path(tempfile.gettempdir()).resolve()
    for wd in workdirs:
        path = Path(wd).resolve()
        if path.parent == tmp and path.name.startswith(WORKDIR_PREFIX):
            shutil.rmtree(path, ignore_errors=True)
    return removed


def _used_networks() -> list[ipaddress.IPv4Network]:
    """Subnets of every Docker network and every (non-default) host route."""
    used: list[ipaddress.IPv4Network] = []
    ids = docker("network", "ls", "-q").split()
    if ids:
        for info in json.loads(docker("network", "inspect", *ids) or "[]"):
            for cfg in (info.get("IPAM") or {}).get("Config") or []:
                try:
                    net = ipaddress.ip_network(cfg.get("Subnet", ""), strict=False)
                except ValueError:
                    continue
                if isinstance(net, ipaddress.IPv4Network):
                    used.append(net)
    if shutil.which("ip"):
        routes = subprocess.run(
            ["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True, check=False
        ).stdout
        for line in routes.splitlines():
            dest = line.split()[0] if line.split() else ""
            if dest in ("default", "local", "broadcast", "unreachable", "blackhole", "prohibit"):
                continue
            try:
                used.append(ipaddress.IPv4Network(dest, strict=False))
            except ValueError:
                continue
    return used


def free_blocks(start: int | None = None) -> list[ipaddress.IPv4Network]:
    """Free /22 blocks of 10.213.0.0/16, beginning at a random one (concurrent beds spread)."""
    used = _used_networks()
    blocks = list(BLOCK_POOL.subnets(new_prefix=22))
    first = start if start is not None else uuid.uuid4().int % len(blocks)
    ordered = blocks[first:] + blocks[:first]
    return [b for b in ordered if not any(b.overlaps(u) for u in used)]


def health_events(container: str, since: float, until: float, timeout: float = 30) -> list[tuple[int, str]]:
    """(nanoseconds, `health_status: <status>`) of every health event of `container` Docker logged
    in [since, until] (until must not lie in the future: `docker events` would wait for it)."""
    out = docker(
        "events",
        "--since",
        f"{since:.9f}",
        "--until",
        f"{until:.9f}",
        "--filter",
        f"container={container}",
        "--filter",
        "event=health_status",
        "--format",
        "{{.TimeNano}} {{.Status}}",
        check=False,
        timeout=timeout,
    )
    events = []
    for line in out.splitlines():
        nanos, _, what = line.partition(" ")
        if nanos.isdigit() and what.strip():
            events.append((int(nanos), what.strip()))
    return events


class BedVanished(AssertionError):
    """A container of the bed disappeared: removed by something else, typically a concurrent
    clean-up matching the label key acestream-orchestrator-test (any value) that the images carry."""

    def __init__(self, bed: RealVpnBed, name: str) -> None:
        super().__init__(
            f"{name} vanished (bed {bed.prefix}; missing now: {', '.join(bed.missing())}): "
            f"removed by something else, e.g. a clean-up filtering on the label key "
            f"acestream-orchestrator-test, which every gt-* image carries"
        )
        self.name = name


@dataclass
class Tunnel:
    """One WireGuard server and the Gluetun that is its only peer (addresses set by the bed)."""

    server: str  # container name
    server_vpn_ip: str = ""  # on <p>-vpn: Gluetun's WIREGUARD_ENDPOINT_IP
    server_inet_ip: str = ""  # on <p>-inet: the tunnel's exit, as the target sees it
    subnet: str = ""  # this tunnel's /30 of 10.213.X+2.0/24
    server_address: str = ""  # wg0 address, e.g. 10.213.X+2.1/30
    client_address: str = ""  # Gluetun's WIREGUARD_ADDRESSES, e.g. 10.213.X+2.2/32
    server_private: str = ""
    server_public: str = ""
    client_private: str = ""
    client_public: str = ""


@dataclass
class GluetunSpec:
    """Everything `docker create` gets for one Gluetun: edit before up()/recreate_gluetun()."""

    name: str
    tunnel: Tunnel
    ip: str = ""
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)  # extra docker create args (-p ..., -e ...)
    ids: list[str] = field(default_factory=list)  # every container id this name has had

    def publish(
        self,
        host_port: int,
        container_port: int | None = None,
        host_ip: str = "127.0.0.1",
        proto: str = "tcp",
    ) -> None:
        """Publish a port on this Gluetun (engines in its namespace listen there)."""
        self.args += ["-p", f"{host_ip}:{host_port}:{container_port or host_port}/{proto}"]

    def publish_range(self, first: int, last: int, host_ip: str = "127.0.0.1") -> None:
        self.args += ["-p", f"{host_ip}:{first}-{last}:{first}-{last}"]


class RealVpnBed:
    """Gluetun stand-ins (or a real Gluetun image, REALVPN_GLUETUN_IMAGE), each behind its own
    real WireGuard server, and a target behind all of them.

    `bed.up()` builds it (and waits for every Gluetun to be healthy), `bed.down()` removes it.
    Gluetuns are addressed by container name (`bed.gluetun_names`, `bed.gluetun` for the first).
    """

    def __init__(
        self,
        gluetuns: int = 1,
        *,
        label: str | None = None,
        prefix: str | None = None,
        api_key: str | None = None,
        control_server_log: bool = True,
        log_level: str = "info",
        env: dict[str, str] | None = None,
        release: str = STANDIN_RELEASE,
    ) -> None:
        if not 1 <= gluetuns <= MAX_GLUETUNS:
            raise ValueError(f"a bed has 1 to {MAX_GLUETUNS} Gluetuns")
        self.label = label or os.environ.get("REALVPN_LABEL") or DEFAULT_LABEL
        _split_label(self.label)
        self.prefix = prefix or f"rv-{uuid.uuid4().hex[:6]}"
        self.api_key = api_key or f"rv-key-{uuid.uuid4().hex}"
        self.control_server_log = control_server_log
        self.log_level = log_level
        self.release = release
        self.extra_env = dict(env or {})
        self.vpn_net = f"{self.prefix}-vpn"
        self.inet_net = f"{self.prefix}-inet"
        self.target = f"{self.prefix}-target"
        self.workdir: Path | None = None
        self.tunnels = [Tunnel(server=f"{self.prefix}-wg{i + 1}") for i in range(gluetuns)]
        self.specs = {
            f"{self.prefix}-gluetun{i + 1}": GluetunSpec(f"{self.prefix}-gluetun{i + 1}", t)
            for i, t in enumerate(self.tunnels)
        }
        self._probes = 0
        self._layout(next(iter(BLOCK_POOL.subnets(new_prefix=22))))

    # ---------- naming and addressing ----------

    def _layout(self, block: ipaddress.IPv4Network) -> None:
        """Give every network, container and tunnel its address inside the /22 `block`."""
        self.block = block
        nets = list(block.subnets(new_prefix=24))
        self.vpn_subnet, self.inet_subnet, self.tunnel_subnet = str(nets[0]), str(nets[1]), str(nets[2])
        vpn, inet, tun = nets[0].network_address, nets[1].network_address, nets[2].network_address
        self.target_ip = str(inet + 10)
        for i, (spec, tunnel) in enumerate(zip(self.specs.values(), self.tunnels, strict=True)):
            spec.ip = str(vpn + 10 + i)
            tunnel.server_vpn_ip = str(vpn + 2 + i)
            tunnel.server_inet_ip = str(inet + 2 + i)
            tunnel.subnet = f"{tun + 4 * i}/30"
            tunnel.server_address = f"{tun + 4 * i + 1}/30"
            tunnel.client_address = f"{tun + 4 * i + 2}/32"

    @property
    def gluetun_names(self) -> list[str]:
        return list(self.specs)

    @property
    def gluetun(self) -> str:
        return self.gluetun_names[0]

    def spec(self, name: str) -> GluetunSpec:
        try:
            return self.specs[name]
        except KeyError:
            raise KeyError(f"{name!r} is not a Gluetun of this bed ({', '.join(self.specs)})") from None

    def gluetun_ip(self, name: str) -> str:
        return self.spec(name).ip

    @property
    def target_address(self) -> str:
        """ip:port of the target's HTTP server (reachable only through a tunnel)."""
        return f"{self.target_ip}:{TARGET_PORT}"

    @property
    def target_url(self) -> str:
        return f"http://{self.target_address}"

    def exit_ip(self, name: str) -> str:
        """The address the target sees for traffic from `name`'s namespace (its server, NATed)."""
        return self.spec(name).tunnel.server_inet_ip

    def control_url(self, name: str) -> str:
        return f"http://{self.gluetun_ip(name)}:{CONTROL_PORT}"

    def labels(self) -> dict[str, str]:
        key, value = _split_label(self.label)
        out = {key: value, f"{REALVPN}": "1", RUN_LABEL: self.prefix, OWNER_LABEL: _owner()}
        if self.workdir is not None:
            out[WORKDIR_LABEL] = str(self.workdir)
        return out

    def label_args(self) -> list[str]:
        out: list[str] = []
        for k, v in self.labels().items():
            out += ["--label", f"{k}={v}"]
        return out

    # ---------- the Gluetun configuration: one place ----------

    def gluetun_env(self, name: str) -> dict[str, str]:
        """The environment `name` is created with (the spec's env overrides the defaults)."""
        spec = self.spec(name)
        tun = spec.tunnel
        env = {
            "VPN_SERVICE_PROVIDER": "custom",
            "VPN_TYPE": "wireguard",
            "WIREGUARD_IMPLEMENTATION": "userspace",
            "WIREGUARD_ENDPOINT_IP": tun.server_vpn_ip,
            "WIREGUARD_ENDPOINT_PORT": str(WG_PORT),
            "WIREGUARD_PUBLIC_KEY": tun.server_public,
            "WIREGUARD_PRIVATE_KEY": tun.client_private,
            "WIREGUARD_ADDRESSES": tun.client_address,
            "HEALTH_TARGET_ADDRESS": self.target_address,
            "DOT": "off",
            "DNS_ADDRESS": self.target_ip,
            "PUBLICIP_PERIOD": "24h",  # 0 is refused (minimum 5 s); PUBLICIP_ENABLED is v3.40+
            "UPDATER_PERIOD": "0",
            "VERSION_INFORMATION": "off",
            "HTTP_CONTROL_SERVER_ADDRESS": f":{CONTROL_PORT}",
            "HTTP_CONTROL_SERVER_AUTH_CONFIG_FILEPATH": "/gluetun/auth/config.toml",
            "HTTP_CONTROL_SERVER_LOG": "on" if self.control_server_log else "off",
            "LOG_LEVEL": self.log_level,
            "TZ": "UTC",
            # read by the stand-in only (a real Gluetun ignores them): the same role as the TOML
            "STANDIN_RELEASE": self.release,
            "STANDIN_API_KEY": self.api_key,
            "STANDIN_AUTH_ROUTES": ",".join(CLIENT_ROUTES),
            "HEALTH_ICMP_TARGET_IP": self.target_ip,
            **STANDIN_HEALTH,
        }
        env.update(self.extra_env)
        env.update(spec.env)
        return env

    def gluetun_create_args(self, name: str) -> list[str]:
        """Full `docker create` argument list for `name` (without the leading "create")."""
        spec = self.spec(name)
        assert self.workdir is not None, "up() first"
        args = [
            "--name",
            name,
            *self.label_args(),
            "--network",
            self.vpn_net,
            "--ip",
            spec.ip,
            "--cap-add",
            "NET_ADMIN",
            "--device",
            "/dev/net/tun",
            "-v",
            f"{self.workdir / 'auth'}:/gluetun/auth:ro",
        ]
        for k, v in self.gluetun_env(name).items():
            args += ["-e", f"{k}={v}"]
        return [*args, *spec.args, GLUETUN_IMAGE]

    def auth_toml(self) -> str:
        routes = ", ".join(json.dumps(r) for r in CLIENT_ROUTES)
        return (
            '[[roles]]\nname = "rv-client"\nauth = "apikey"\n'
            f'apikey = "{self.api_key}"\nroutes = [{routes}]\n'
        )

    # ---------- up / down ----------

    def up(self, wait: bool = True, timeout: float = 90) -> RealVpnBed:
        remove_leftovers(self.label)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{self.prefix}-"))
        try:
            (self.workdir / "auth").mkdir()
            (self.workdir / "auth" / "config.toml").write_text(self.auth_toml())
            self._create_networks()
            self._generate_keys()
            for tunnel in self.tunnels:
                self._create_server(tunnel)
            docker(
                "run",
                "-d",
                "--name",
                self.target,
                *self.label_args(),
                "--network",
                self.inet_net,
                "--ip",
                self.target_ip,
                TARGET_IMAGE,
            )
            for tunnel in self.tunnels:
                self._wait_server(tunnel)
            for name in self.specs:
                self._create_gluetun(name)
            if wait:
                for name in self.specs:
                    self.wait_healthy(name, timeout)
        except BaseException:
            self.down()
            raise
        return self

    def _generate_keys(self) -> None:
        script = 'for i in $(seq %d); do k=$(wg genkey); echo "$k $(echo "$k" | wg pubkey)"; done'
        out = docker(
            "run",
            "--rm",
            *self.label_args(),
            "--network",
            "none",
            "--entrypoint",
            "/bin/sh",
            BASE_IMAGE,
            "-c",
            script % (2 * len(self.tunnels)),
        )
        pairs = [line.split() for line in out.splitlines() if line.strip()]
        assert len(pairs) == 2 * len(self.tunnels), out
        for i, tunnel in enumerate(self.tunnels):
            tunnel.server_private, tunnel.server_public = pairs[2 * i]
            tunnel.client_private, tunnel.client_public = pairs[2 * i + 1]

    def _create_networks(self) -> None:
        last = ""
        for block in free_blocks()[:8]:
            self._layout(block)
            # names can be taken by an earlier bed with this prefix; they are ours to replace
            done = subprocess.run(
                [
                    "docker",
                    "network",
                    "create",
                    *self.label_args(),
                    "--driver",
                    "bridge",
                    "--subnet",
                    self.vpn_subnet,
                    self.vpn_net,
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if done.returncode == 0:
                done = subprocess.run(
                    [
                        "docker",
                        "network",
                        "create",
                        *self.label_args(),
                        "--internal",
                        "--subnet",
                        self.inet_subnet,
                        self.inet_net,
                    ],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                )
                if done.returncode == 0:
                    return
                docker("network", "rm", self.vpn_net, check=False)
            last = done.stderr.strip()
            if "overlap" not in last:
                raise AssertionError(f"docker network create failed: {last}")
        raise AssertionError(f"no free /22 in {BLOCK_POOL} for the bed's networks (last error: {last})")

    def _create_server(self, tunnel: Tunnel) -> None:
        docker(
            "create",
            "--name",
            tunnel.server,
            *self.label_args(),
            "--network",
            self.vpn_net,
            "--ip",
            tunnel.server_vpn_ip,
            "--cap-add",
            "NET_ADMIN",
            "--device",
            "/dev/net/tun",
            "--sysctl",
            "net.ipv4.ip_forward=1",
            "-e",
            f"WG_PRIVATE_KEY={tunnel.server_private}",
            "-e",
            f"WG_PEER_PUBLIC_KEY={tunnel.client_public}",
            "-e",
            f"WG_PORT={WG_PORT}",
            "-e",
            f"WG_ADDRESS={tunnel.server_address}",
            "-e",
            f"WG_PEER_ALLOWED_IPS={tunnel.client_address}",
            "-e",
            f"TUNNEL_SUBNET={tunnel.subnet}",
            WGSERVER_IMAGE,
        )
        docker("network", "connect", "--ip", tunnel.server_inet_ip, self.inet_net, tunnel.server)
        docker("start", tunnel.server)

    def _wait_server(self, tunnel: Tunnel, since: str | None = None, timeout: float = 20) -> None:
        def up() -> bool:
            state = (inspect(tunnel.server) or {}).get("State", {})
            if not state.get("Running"):
                raise AssertionError(f"{tunnel.server} is not running: {self.logs(tunnel.server)}")
            args = ["logs", *(["--since", since] if since else []), tunnel.server]
            return (
                "wgserver up"
                in subprocess.run(["docker", *args], capture_output=True, text=True, check=False).stdout
            )

        wait_for(f"{tunnel.server} up", up, timeout=timeout, interval=0.2)

    def _create_gluetun(self, name: str) -> None:
        cid = docker("create", *self.gluetun_create_args(name))
        self.spec(name).ids.append(cid)
        docker("start", name)

    def down(self) -> list[str]:
        """Remove every container and network of this bed (and of killed earlier runs with its
        label), and containers left in its Gluetuns' namespaces; returns the names removed."""
        removed: list[str] = []
        ours = containers(f"label={RUN_LABEL}={self.prefix}") + self._namespace_containers()
        ours = list(dict.fromkeys(ours))
        if ours:
            names = docker("inspect", "-f", "{{.Name}}", *ours, check=False).split()
            docker("rm", "-f", *ours, check=False, timeout=120)
            removed += [n.lstrip("/") for n in names]
        for net in (self.vpn_net, self.inet_net):
            info = json.loads(docker("network", "inspect", net, check=False) or "[]")
            if info and (info[0].get("Labels") or {}).get(RUN_LABEL) == self.prefix:
                docker("network", "rm", net, check=False)
                removed.append(net)
        removed += remove_leftovers(self.label)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return removed

    def _namespace_containers(self) -> list[str]:
        """Containers whose network namespace is (was) one of this bed's Gluetuns."""
        ids = {i for spec in self.specs.values() for i in spec.ids}
        if not ids:
            return []
        every = docker("ps", "-aq", "--no-trunc").split()
        if not every:
            return []
        out = []
        for info in json.loads(docker("inspect", *every, check=False) or "[]"):
            mode = (info.get("HostConfig") or {}).get("NetworkMode", "")
            if mode.startswith("container:") and (mode[10:] in ids or mode[10:] in self.specs):
                out.append(info["Id"])
        return out

    # ---------- failures ----------

    def _servers(self, name: str | None) -> list[str]:
        servers = [t.server for t in self.tunnels] if name is None else [self.spec(name).tunnel.server]
        for server in servers:
            if inspect(server) is None:
                raise BedVanished(self, server)
        return servers

    def missing(self) -> list[str]:
        """The bed's own containers that no longer exist (someone else removed them)."""
        names = [*self.specs, self.target, *(t.server for t in self.tunnels)]
        return [n for n in names if inspect(n) is None]

    def kill_tunnel(self, name: str | None = None) -> None:
        """Stop the WireGuard server of `name` (every server when None): the tunnel is gone."""
        docker("stop", "-t", "2", *self._servers(name))

    def restore_tunnel(self, name: str | None = None) -> None:
        """Start the WireGuard server(s) again; returns once they listen."""
        servers = self._servers(name)
        since = f"{time.time():.9f}"
        docker("start", *servers)
        for tunnel in self.tunnels:
            if tunnel.server in servers:
                self._wait_server(tunnel, since=since)

    def restart_gluetun(self, name: str, stop_timeout: int = 10) -> None:
        """`docker restart`: containers in its namespace stay Up in the old, dead namespace."""
        docker("restart", "-t", str(stop_timeout), name, timeout=stop_timeout + 60)

    def recreate_gluetun(self, name: str) -> None:
        """`docker rm -f` and create+start again: same name, config and IP, a new id."""
        self.spec(name)
        docker("rm", "-f", name)
        self._create_gluetun(name)

    def stop_gluetun(self, name: str, stop_timeout: int = 10) -> None:
        docker("stop", "-t", str(stop_timeout), name, timeout=stop_timeout + 60)

    def start_gluetun(self, name: str) -> None:
        docker("start", name)

    # ---------- observing ----------

    def docker_health(self, name: str) -> str | None:
        """Docker's health status of the container: starting, healthy, unhealthy (None: none)."""
        health = ((inspect(name) or {}).get("State") or {}).get("Health") or {}
        return health.get("Status")

    def wait_health(self, name: str, status: str, timeout: float = 60, since: float | None = None) -> float:
        """Wait until Docker reports `status`; returns seconds from `since` (default: now) to the
        health_status event Docker logged (to the poll that saw it when no event is found)."""
        since = time.time() if since is None else since

        def reached() -> bool:
            info = inspect(name)
            if info is None:
                raise BedVanished(self, name)
            return ((info.get("State") or {}).get("Health") or {}).get("Status") == status

        wait_for(f"{name} Docker health {status}", reached, timeout=timeout, interval=0.25)
        seen = time.time()
        at = self.health_event_time(name, status, since, time.time())
        return (at if at is not None else seen) - since

    def wait_healthy(self, name: str, timeout: float = 60, since: float | None = None) -> float:
        return self.wait_health(name, "healthy", timeout, since)

    def health_event_time(self, name: str, status: str, since: float, until: float) -> float | None:
        """time.time() of the first `health_status: <status>` event of `name` in [since, until]
        (until must not lie in the future: `docker events` would wait for it)."""
        for nanos, what in health_events(name, since, until, timeout=20):
            if what == f"health_status: {status}":
                return nanos / 1e9
        return None

    def control_get(
        self, name: str, path: str, key: Any = _KEY_DEFAULT, timeout: float = 5
    ) -> tuple[int, Any]:
        """GET `path` on `name`'s control server with header X-API-Key (the bed's key by default,
        `key=None` for none); returns (status, JSON body, or the text when it is not JSON)."""
        return self.control_request(name, "GET", path, key=key, timeout=timeout)

    def control_request(
        self,
        name: str,
        method: str,
        path: str,
        *,
        body: Any = None,
        key: Any = _KEY_DEFAULT,
        timeout: float = 5,
    ) -> tuple[int, Any]:
        key = self.api_key if key is _KEY_DEFAULT else key
        headers = {"X-API-Key": key} if key is not None else {}
        data = None if body is None else json.dumps(body).encode()
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(
            self.control_url(name) + path, data=data, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        text = raw.decode(errors="replace")
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text.strip()

    def logs(self, name: str, tail: int = 200) -> str:
        done = subprocess.run(
            ["docker", "logs", "--tail", str(tail), name],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        return done.stdout + done.stderr

    # ---------- containers in a Gluetun's namespace, and beside it ----------

    def start_in_namespace(
        self, name: str, *cmd: str, image: str = BASE_IMAGE, args: tuple[str, ...] = ()
    ) -> str:
        """A detached container in `name`'s network namespace (default: gt-base sleeping); it
        carries the bed's labels; returns its name."""
        self._probes += 1
        probe = f"{self.prefix}-ns{self._probes}"
        docker(
            "run",
            "-d",
            "--name",
            probe,
            *self.label_args(),
            "--network",
            f"container:{name}",
            *args,
            image,
            *(cmd or ("sleep", "infinity")),
        )
        return probe

    def start_on_vpn_network(self, *cmd: str, image: str = BASE_IMAGE) -> str:
        """A detached container on the bridge network the Gluetuns and servers share."""
        self._probes += 1
        probe = f"{self.prefix}-br{self._probes}"
        docker(
            "run",
            "-d",
            "--name",
            probe,
            *self.label_args(),
            "--network",
            self.vpn_net,
            image,
            *(cmd or ("sleep", "infinity")),
        )
        return probe

    def fetch(self, container: str, url: str | None = None, timeout: float = 3) -> str | None:
        """`curl` `url` (default: the target's /cgi-bin/whoami) from inside `container`; the body,
        or None when it does not answer."""
        url = url or f"{self.target_url}/cgi-bin/whoami"
        done = subprocess.run(
            ["docker", "exec", container, "curl", "-sf", "-m", str(timeout), url],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout + 30,
        )
        return done.stdout.strip() if done.returncode == 0 else None

    def __enter__(self) -> RealVpnBed:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()


def main(argv: list[str] | None = None) -> int:
    """python -m testkit.realvpn.bed cleanup [--label K=V] [--all]"""
    parser = argparse.ArgumentParser(prog="python -m testkit.realvpn.bed")
    parser.add_argument("command", choices=["cleanup"])
    parser.add_argument("--label", default=os.environ.get("REALVPN_LABEL") or DEFAULT_LABEL)
    parser.add_argument("--all", action="store_true", help="also beds whose owner process still runs")
    ns = parser.parse_args(argv)
    for what in remove_leftovers(ns.label, everything=ns.all):
        print("removed", what)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
