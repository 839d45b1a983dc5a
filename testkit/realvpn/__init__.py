"""The real-tunnel lane (testbed/realvpn): the bed of a WireGuard server, a target and a Gluetun
with a real tunnel, and a daemon run on it; shared by tests/realvpn and bench/real_gluetun.py."""
