"""Which VPN names an edit may put in force, as a table."""

from __future__ import annotations

import pytest

from reconcilers.vpn_list import unknown_vpns

ROWS = [
    # (in force, wanted, existing containers, held for)
    ((), (), (), ()),
    (("gluetun",), ("gluetun",), (), ()),  # in force already: even if it went, no hold
    (("gluetun",), ("gluetn",), ("gluetun",), ("gluetn",)),  # the typo
    (("gluetun",), ("gluetun-2",), ("gluetun", "gluetun-2"), ()),  # a rename to a real one
    (("gluetun",), ("gluetun", "gluetun-2"), ("gluetun",), ("gluetun-2",)),  # a second, not there yet
    (("g1", "g2"), ("g1",), ("g1",), ()),  # dropping one never waits
    (("g1",), (), (), ()),  # turning the VPN off never waits
    ((), ("g1", "g2"), ("g2",), ("g1",)),  # from none to two: one missing holds the edit
]


@pytest.mark.parametrize(("in_force", "wanted", "existing", "held"), ROWS)
def test_unknown_vpns(
    in_force: tuple[str, ...], wanted: tuple[str, ...], existing: tuple[str, ...], held: tuple[str, ...]
) -> None:
    assert unknown_vpns(in_force, wanted, existing) == held
