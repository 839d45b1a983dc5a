# Stand-in for /acestream/main.py of ghcr.io/krinkuto11/acestream:latest-{amd64,arm32,arm64}
# (krinkuto11/aceserve@5b3a371, aceserve-x86_64/main.py; fork of jopsis/docker-acestream-aceserve).
# The real one: WAIT_FOR_VPN=1|true|yes waits up to VPN_TIMEOUT (60) s for /sys/class/net/tun0;
# DNS_OVERRIDE (default 1.1.1.1,1.0.0.1) sets the resolver; then aceserve.main() runs the engine
# with the command line as its flags. The stand-in `python` reads this file for these lines:
# standin: wait-for-vpn
