#!/bin/bash
# WireGuard server: wireguard-go (userspace; the kernel has no WireGuard module) on wg0 with one
# peer, forwarding and NAT from the tunnel to every network but the first (eth0, where the peer
# reaches it): the target then sees the tunnel's traffic as this container's address there.
# Env: WG_PRIVATE_KEY WG_PEER_PUBLIC_KEY WG_PORT WG_ADDRESS (e.g. 10.213.2.1/30)
#      WG_PEER_ALLOWED_IPS (the peer's address, /32) TUNNEL_SUBNET. Prints "wgserver up" when listening.
set -euo pipefail
: "${WG_PRIVATE_KEY:?}" "${WG_PEER_PUBLIC_KEY:?}" "${WG_ADDRESS:?}" "${WG_PEER_ALLOWED_IPS:?}" "${TUNNEL_SUBNET:?}"
port=${WG_PORT:-51820}
trap 'kill "$pid" 2>/dev/null; exit 0' TERM INT
ip link del wg0 2>/dev/null || true
rm -f /var/run/wireguard/wg0.sock  # left by the previous run: the container keeps its files
wireguard-go -f wg0 &
pid=$!
# its control socket, which `wg` needs (without it `wg` asks the kernel: "Protocol not
# supported"): seconds on a machine busy with other suites, so up to 30 s
for _ in $(seq 600); do [ -S /var/run/wireguard/wg0.sock ] && break; sleep 0.05; done
[ -S /var/run/wireguard/wg0.sock ] || { echo "wgserver: wireguard-go made no control socket in 30 s" >&2; exit 1; }
umask 077
printf '%s\n' "$WG_PRIVATE_KEY" >/run/wg.key
wg set wg0 listen-port "$port" private-key /run/wg.key peer "$WG_PEER_PUBLIC_KEY" allowed-ips "$WG_PEER_ALLOWED_IPS"
rm -f /run/wg.key
ip address add "$WG_ADDRESS" dev wg0
ip link set wg0 mtu 1420 up
# forward only from the tunnel to the other networks (never back out on eth0), and NAT it
iptables -P FORWARD DROP
iptables -A FORWARD -i wg0 ! -o eth0 -s "$TUNNEL_SUBNET" -j ACCEPT
iptables -A FORWARD -o wg0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
iptables -t nat -A POSTROUTING -s "$TUNNEL_SUBNET" ! -o wg0 -j MASQUERADE
echo "wgserver up: wg0 $WG_ADDRESS, udp $port, peer ${WG_PEER_PUBLIC_KEY:0:8}... $WG_PEER_ALLOWED_IPS"
wait "$pid"
echo "wgserver: wireguard-go exited" >&2
exit 1
