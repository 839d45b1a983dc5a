"""The stand-in Gluetuns' "tunnel", for the suites and the soak that cut it for real: a busybox
web server on a network of its own that each Gluetun joins, the target of the daemon's tunnel
probe. A blip is disconnecting a Gluetun from that network (the probe's dials fail) and
connecting it again. One definition for the tunnel-probe tests, the stream-safety tests and the
kill rounds."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from testkit.harness import docker, inspect, label_args, remove_network, run_gluetun, wait_vpn_health

BUSYBOX = "acestream-orchestrator-test/busybox:latest"
FAST_PROBE = {"interval_s": 0.5, "timeout_s": 1, "retries": 1}  # a dead target seen within ~2 s


@dataclass(frozen=True)
class Internet:
    network: str
    ip: str

    def cut(self, vpn: str) -> None:
        docker("network", "disconnect", self.network, vpn)

    def mend(self, vpn: str) -> None:
        docker("network", "connect", self.network, vpn)

    def vpn_on(self, name: str) -> str:
        """A stand-in Gluetun `name` joined to this network and healthy; returns its id."""
        gluetun_id = run_gluetun(name)
        self.mend(name)
        wait_vpn_health(name, "healthy")
        return gluetun_id


@contextmanager
def internet(prefix: str = "inet") -> Iterator[Internet]:
    """The web server and its network, labelled for this session, removed at the end."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    docker("network", "create", *label_args(), name)
    try:
        docker(
            "run", "-d", "--name", name, "--network", name, *label_args(), BUSYBOX, "httpd", "-f", "-p", "80"
        )
        info = inspect(name)
        assert info is not None
        yield Internet(network=name, ip=str(info["NetworkSettings"]["Networks"][name]["IPAddress"]))
    finally:
        docker("rm", "-f", name, check=False)
        remove_network(name)
