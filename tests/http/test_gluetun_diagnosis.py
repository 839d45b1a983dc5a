"""Each 401 diagnosis, against the Gluetun stand-in's scripts served locally per release line: the
daemon's control client names the Gluetun setting to change, and never calls it the VPN down."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import aiohttp
import pytest

from orchestrator.vpn.control import ControlAuthDiagnosed, Credentials, GluetunControl
from reconcilers.model import ControlProblem
from testkit.gluetun_standin import serve_standins

KEY = "diag-key"
USER, WRONG = "u", "wrong"
NO_PORT_ROUTE = "GET /v1/vpn/status, GET /v1/publicip/ip"


@dataclass(frozen=True, kw_only=True)
class Case:
    id: str
    release: str
    env: dict[str, str] = field(default_factory=dict)
    client: Credentials = field(default_factory=Credentials)
    port_needed: bool = True
    code: str | None  # None: nothing to diagnose
    says: tuple[str, ...] = ()


CASES = [
    Case(
        id="master_no_credentials_anywhere",
        release="master",
        code="gluetun_auth_required",
        says=(
            "master",
            "no public role",
            'HTTP_CONTROL_SERVER_AUTH_DEFAULT_ROLE=\'{"auth":"apikey"',
            "vpn.api_key",
        ),
    ),
    Case(
        id="master_key_gluetun_does_not_know",
        release="master",
        client=Credentials(api_key="unknown"),
        code="gluetun_auth_rejected",
        says=("v3.41.2+ or master", "vpn.api_key", "HTTP_CONTROL_SERVER_AUTH_DEFAULT_ROLE"),
    ),
    Case(
        id="v3.41.2_wrong_key",
        release="v3.41.2",
        env={"STANDIN_API_KEY": KEY},
        client=Credentials(api_key="unknown"),
        code="gluetun_auth_rejected",
        says=("v3.41.2+ or master", "HTTP_CONTROL_SERVER_AUTH_DEFAULT_ROLE"),
    ),
    Case(
        id="v3.41_wrong_basic",
        release="v3.41",
        env={"STANDIN_BASIC_USER": "u", "STANDIN_BASIC_PASSWORD": "p"},
        client=Credentials(user="u", password=WRONG),
        code="gluetun_auth_rejected",
        says=("v3.39-v3.41.1", "vpn.api_user/vpn.api_password", '"auth":"basic"'),
    ),
    Case(
        id="v3.40_wrong_key",
        release="v3.40",
        env={"STANDIN_API_KEY": KEY},
        client=Credentials(api_key="unknown"),
        code="gluetun_auth_rejected",
        says=("v3.39-v3.41.1", "HTTP_CONTROL_SERVER_AUTH_CONFIG_FILEPATH", '"GET /v1/openvpn/portforwarded"'),
    ),
    Case(
        id="v3.40_roles_but_daemon_has_no_key",
        release="v3.40",
        env={"STANDIN_API_KEY": KEY},
        code="gluetun_auth_required",
        says=("v3.39-v3.41.1", "HTTP_CONTROL_SERVER_AUTH_CONFIG_FILEPATH", "vpn.api_key"),
    ),
    Case(
        id="v3.41_role_without_the_port_route",
        release="v3.41",
        env={"STANDIN_API_KEY": KEY, "STANDIN_AUTH_ROUTES": NO_PORT_ROUTE},
        client=Credentials(api_key=KEY),
        code="gluetun_route_not_allowed",
        says=('"GET /v1/portforward"', "v3.41+", "HTTP_CONTROL_SERVER_AUTH_CONFIG_FILEPATH"),
    ),
    Case(
        id="v3.41.2_role_without_the_port_route",
        release="v3.41.2",
        env={"STANDIN_API_KEY": KEY, "STANDIN_AUTH_ROUTES": NO_PORT_ROUTE},
        client=Credentials(api_key=KEY),
        code="gluetun_route_not_allowed",
        says=('"GET /v1/portforward"', "HTTP_CONTROL_SERVER_AUTH_DEFAULT_ROLE"),
    ),
    Case(
        id="v3.40_role_without_the_old_port_route",
        release="v3.40",
        env={"STANDIN_API_KEY": KEY, "STANDIN_AUTH_ROUTES": NO_PORT_ROUTE},
        client=Credentials(api_key=KEY),
        code="gluetun_route_not_allowed",
        says=('"GET /v1/openvpn/portforwarded" (v3.39-v3.40)',),
    ),
    Case(
        id="v3.41_role_without_the_ip_route",
        release="v3.41",
        env={"STANDIN_API_KEY": KEY, "STANDIN_AUTH_ROUTES": "GET /v1/vpn/status, GET /v1/portforward"},
        client=Credentials(api_key=KEY),
        code="gluetun_route_not_allowed",
        says=('"GET /v1/publicip/ip"',),
    ),
    # v3.39-v3.40: /v1/portforward is 401 for everyone; the old route answers: nothing wrong
    Case(
        id="v3.40_new_route_401_is_fine",
        release="v3.40",
        env={"STANDIN_API_KEY": KEY},
        client=Credentials(api_key=KEY),
        code=None,
    ),
    Case(id="v3.40_public_role", release="v3.40", code=None),
    # an operator-given port: a role without the port route is no problem
    Case(
        id="v3.41_static_port_needs_no_port_route",
        release="v3.41",
        env={"STANDIN_API_KEY": KEY, "STANDIN_AUTH_ROUTES": NO_PORT_ROUTE},
        client=Credentials(api_key=KEY),
        port_needed=False,
        code=None,
    ),
]


@pytest.fixture(scope="module")
def stand_ins() -> Iterator[dict[str, str]]:
    """One stand-in per case, all started at once: case ID -> its control server's URL."""
    envs = {c.id: {"STANDIN_RELEASE": c.release, "STANDIN_FORWARDED_PORT": "40555", **c.env} for c in CASES}
    with serve_standins(envs) as urls:
        yield urls


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
async def test_each_401_names_the_setting_to_change(stand_ins: dict[str, str], case: Case) -> None:
    problem: ControlProblem | None
    async with aiohttp.ClientSession() as session:
        control = GluetunControl(session, credentials=lambda: case.client)
        try:
            reading = await control.read(stand_ins[case.id], port_needed=case.port_needed)
        except ControlAuthDiagnosed as exc:
            problem = exc.problem
        else:
            assert reading.vpn_status == "running"
            problem = reading.problem
    if case.code is None:
        assert problem is None
        return
    assert problem is not None
    assert problem.code == case.code
    for words in case.says:
        assert words in problem.message
    assert "The tunnel itself is not concerned" in problem.message
    assert "down" not in problem.message.lower()
