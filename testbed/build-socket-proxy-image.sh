#!/usr/bin/env bash
# Build the Docker socket proxy's image from Debian's packages, without any registry:
#
#   acestream-orchestrator-test/socket-proxy:latest
#       debootstrap --variant=minbase bookworm + haproxy, trimmed, then `docker import` with
#       haproxy as its command and compose/socket-proxy/haproxy.cfg as its configuration.
#
# The compose stacks run the same configuration in a registry image (haproxy:lts, see
# docs/security.md); the tests build this one instead. Nothing is built when the image carries
# the current inputs hash (this script, haproxy.cfg); FORCE=1 rebuilds anyway. The .debs are kept
# in $CACHE, shared with build-base-image.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ns=acestream-orchestrator-test
image=${SOCKET_PROXY_IMAGE:-$ns/socket-proxy:latest}
key=$ns.inputs
suite=bookworm
packages=haproxy
cfg=$here/../compose/socket-proxy/haproxy.cfg
CACHE=/var/cache/acestream-orchestrator/debootstrap

say() { echo "build-socket-proxy-image: $*"; }
die() { echo "build-socket-proxy-image: ERROR: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot)"

hash=$({ sha256sum <"$here/build-socket-proxy-image.sh"; sha256sum <"$cfg"; echo "$suite $packages"; } |
  sha256sum | cut -c1-16)
if [ -z "${FORCE:-}" ] &&
  [ "$(docker image inspect -f "{{index .Config.Labels \"$key\"}}" "$image" 2>/dev/null)" = "$hash" ]; then
  say "up to date ($image, $hash)"
  exit 0
fi

if ! command -v debootstrap >/dev/null; then
  say "installing debootstrap"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; } \
    >/tmp/build-socket-proxy-image.apt.log 2>&1 ||
    { tail -n 20 /tmp/build-socket-proxy-image.apt.log >&2; die "apt-get install debootstrap failed"; }
fi
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

t0=$SECONDS
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
root=$tmp/rootfs
mkdir -p "$CACHE"
say "debootstrap $suite + $packages from $mirror (log on failure)"
debootstrap --variant=minbase --include="$packages" --cache-dir="$CACHE" "$suite" "$root" "$mirror" \
  >"$tmp/debootstrap.log" 2>&1 || { tail -n 30 "$tmp/debootstrap.log" >&2; die "debootstrap failed"; }
[ -x "$root/usr/sbin/haproxy" ] || die "haproxy missing from the rootfs"
rm -rf "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
  "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
  "$root"/var/log/* "$root"/tmp/* "$root"/var/tmp/*
mkdir -p "$root/usr/local/etc/haproxy" "$root/run/docker-proxy"
cp "$cfg" "$root/usr/local/etc/haproxy/haproxy.cfg"
# the config is where the haproxy:lts image expects it, so the compose file mounts it there for both
tar -C "$root" -c . | docker import \
  -c 'CMD ["/usr/sbin/haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]' \
  -c "LABEL $key=$hash" \
  -c "LABEL $ns.role=socket-proxy" \
  - "$image" >/dev/null
say "built $image ($((SECONDS - t0))s)"
