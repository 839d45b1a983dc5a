"""What an operator must change in Gluetun when its control server answers the daemon 401.

A 401 says only "no role lets this request in"; which Gluetun setting fixes it depends on the
release line (docs/gluetun-releases.md), which the daemon tells from answers it already has,
plus, after a 401 on the status route, one request to a path no release serves: v3.41.2+ and
master answer it 404 before any role is looked at, v3.39-v3.41.1 answer 401.

- 401 on `GET /v1/vpn/status`: the credentials. With none given to the daemon it is master (no
  public role) or a Gluetun with roles configured; with some, Gluetun does not know them.
- 401 on a route the daemon needs while the status route works: the role of the daemon's
  credentials does not list it. On v3.39-v3.40 `/v1/portforward` is 401 for everyone (not a
  route there) and the old route answers: no problem at all. On v3.41+ the old route is a 301
  to the new one, so a 401 on the new route means the role lacks `GET /v1/portforward`.

Every message names the setting and says that the tunnel is not concerned: the daemon keeps
using the VPN on what Docker and the tunnel probe say.
"""

from __future__ import annotations

from reconcilers.model import ControlProblem

UNKNOWN_ROUTE = "/v1/acestream-orchestrator-unknown-route"
NOT_THE_TUNNEL = "The tunnel itself is not concerned: engines stay in service while it works."


def _role_json(kind: str) -> str:
    if kind == "basic":
        return '{"auth":"basic","username":"<vpn.api_user>","password":"<vpn.api_password>"}'
    return '{"auth":"apikey","apikey":"<vpn.api_key>"}'


def status_unauthorized(*, credentials: str | None, unknown_route_status: int | None) -> ControlProblem:
    """A 401 on `GET /v1/vpn/status`. `credentials`: "apikey", "basic" or None (the daemon sends
    none); `unknown_route_status`: what Gluetun answered to `UNKNOWN_ROUTE` (None: no answer)."""
    newest = unknown_route_status in (404, 405)  # v3.41.2+ or master
    role = _role_json(credentials or "apikey")
    default_role = f"HTTP_CONTROL_SERVER_AUTH_DEFAULT_ROLE='{role}'"
    file_role = (
        "a role in Gluetun's auth config file (HTTP_CONTROL_SERVER_AUTH_CONFIG_FILEPATH, a roles TOML, "
        'v3.39+) with these credentials and the routes "GET /v1/vpn/status", "GET /v1/publicip/ip" '
        'and "GET /v1/portforward" (v3.41+) or "GET /v1/openvpn/portforwarded" (v3.39-v3.40)'
    )
    if credentials is None:
        if newest:
            head = (
                "Gluetun's control server answers 401 to GET /v1/vpn/status and the daemon has no "
                "credentials: this is Gluetun master/:latest (no public role: every route needs "
                "credentials) or v3.41.2+ with roles configured. Set "
                f"{default_role} on the Gluetun container and the same key in vpn.api_key"
            )
        else:
            head = (
                "Gluetun's control server (v3.39-v3.41.1) has roles configured and answers 401 to "
                "GET /v1/vpn/status; the daemon has no credentials. Give vpn.api_key (or "
                "vpn.api_user/vpn.api_password) the credentials of "
                f"{file_role}; on v3.41.x {default_role} works too"
            )
        return ControlProblem(code="gluetun_auth_required", message=f"{head}. {NOT_THE_TUNNEL}")
    what = "vpn.api_key" if credentials == "apikey" else "vpn.api_user/vpn.api_password"
    if newest:
        head = (
            f"Gluetun (v3.41.2+ or master) rejects the credentials in {what} (401 on GET "
            f"/v1/vpn/status): set {default_role} on the Gluetun container with the same "
            f"credentials, or put them in {file_role}"
        )
    else:
        head = (
            f"Gluetun (v3.39-v3.41.1) rejects the credentials in {what} (401 on GET "
            f"/v1/vpn/status): put them in {file_role}; on v3.41.x {default_role} works too"
        )
    return ControlProblem(code="gluetun_auth_rejected", message=f"{head}. {NOT_THE_TUNNEL}")


def routes_unauthorized(
    *, public_ip_status: int, port_statuses: tuple[int, int] | None
) -> ControlProblem | None:
    """The status route answered; a 401 on a route the daemon needs? `port_statuses`: the answers
    of `/v1/portforward` and `/v1/openvpn/portforwarded` (None: the port is not read from Gluetun,
    e.g. an operator-given static port, or the new route answered)."""
    missing: list[str] = []
    if public_ip_status == 401:
        missing.append('"GET /v1/publicip/ip"')
    line = ""
    if port_statuses is not None:
        new, old = port_statuses
        if new == 401 and old in (301, 308):
            missing.append('"GET /v1/portforward"')
            line = " (Gluetun v3.41+: the old route redirects to it)"
        elif new == 401 and old == 401:
            missing.append('"GET /v1/openvpn/portforwarded" (v3.39-v3.40) or "GET /v1/portforward" (v3.41+)')
    if not missing:
        return None
    routes = " and ".join(missing)
    return ControlProblem(
        code="gluetun_route_not_allowed",
        message=(
            f"Gluetun's control server answers 401 to {routes}{line}: the role of the daemon's "
            "credentials does not cover it. Add it to that role's routes in Gluetun's auth config "
            "file (HTTP_CONTROL_SERVER_AUTH_CONFIG_FILEPATH), or on v3.41+ leave it to "
            "HTTP_CONTROL_SERVER_AUTH_DEFAULT_ROLE, which covers every route no role of the file "
            "lists. Until then the forwarded port or public IP stays unknown. " + NOT_THE_TUNNEL
        ),
    )
