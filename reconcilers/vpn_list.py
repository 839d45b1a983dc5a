"""Which VPN containers an edit may put in force: a name that does not exist is a typo until a
container of that name appears.

Renaming `vpn.containers: [gluetun]` to a name with a typo would otherwise move every engine off
a working VPN onto one that is not there: an outage made by one character. So an edit that names
a VPN container the daemon has not seen (not in force already, and no container of that name)
is held, and the list in force stays, until the container exists.
"""

from __future__ import annotations

from collections.abc import Collection


def unknown_vpns(
    in_force: Collection[str], wanted: Collection[str], existing: Collection[str]
) -> tuple[str, ...]:
    """The names in `wanted` that are neither in force nor an existing container, in order."""
    return tuple(name for name in wanted if name not in in_force and name not in existing)
