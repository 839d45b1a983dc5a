"""This machine's own addresses, for tests that need a caller off loopback (the page's and the
API's access rules) without leaving the machine."""

from __future__ import annotations

import fcntl
import socket
import struct

import pytest

SIOCGIFADDR = 0x8915


def lan_address() -> str:
    """An IPv4 address of this machine that is not loopback (eth0, docker0, ...)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _, name in socket.if_nameindex():
            try:
                packed = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, struct.pack("256s", name[:15].encode()))
            except OSError:
                continue  # no IPv4 address on it
            address = socket.inet_ntoa(packed[20:24])
            if not address.startswith("127."):
                return address
    finally:
        probe.close()
    pytest.fail("this machine has no non-loopback IPv4 address to serve the off-loopback tests on")
