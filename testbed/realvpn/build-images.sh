#!/usr/bin/env bash
# Build the real-tunnel lane's images from Debian's packages only (no registry, no prebuilt binary):
#
#   acestream-orchestrator-test/gt-base:bookworm     debootstrap --variant=minbase bookworm (the Debian
#                                                    mirror apt uses) + wireguard-go, wireguard-tools,
#                                                    iptables, iproute2, busybox, dnsmasq-base, curl ...,
#                                                    then `docker import`
#   acestream-orchestrator-test/gt-gluetun:tunnel    the Gluetun stand-in with a real data plane
#                                                    (images/gluetun: wireguard-go client, kill switch,
#                                                    health server, internal restart) + the control server
#                                                    of testbed/gluetun (gluetun-lib, gluetun-serve,
#                                                    standin-set-port copied in, run by busybox)
#   acestream-orchestrator-test/gt-wgserver:latest   wireguard-go + wg + iptables NAT: a WireGuard server
#   acestream-orchestrator-test/gt-target:latest     busybox httpd :80 + dnsmasq :53: the "internet"
#
# Every image carries acestream-orchestrator-test=1 and acestream-orchestrator-test.inputs=<hash of this
# script, images/, the copied testbed/gluetun files, the package list>; nothing is built when all four
# carry the current hash (FORCE=1 rebuilds anyway). Root, Docker and apt-get; installs debootstrap when
# missing. Env: DEBIAN_MIRROR (default: the first .../debian URI in /etc/apt/sources.list*).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
ns=acestream-orchestrator-test
key=$ns.inputs
suite=bookworm
base=$ns/gt-base:bookworm
gluetun=$ns/gt-gluetun:tunnel
wgserver=$ns/gt-wgserver:latest
target=$ns/gt-target:latest
base_packages=iptables,ca-certificates,iproute2,wireguard-tools,wireguard-go,busybox,dnsmasq-base,tzdata,netcat-openbsd,curl,procps,iputils-ping
# the existing stand-in's control server, copied (not changed) into the Gluetun stand-in's context
control_files="gluetun-lib gluetun-serve standin-set-port"
CACHE=/var/cache/acestream-orchestrator/debootstrap-realvpn

say() { echo "realvpn/build-images: $*"; }
die() { echo "realvpn/build-images: ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot)"
docker info >/dev/null 2>&1 || die "no Docker engine answers (bash scripts/ensure-docker.sh)"

hash=$({ sha256sum <"$here/build-images.sh"
  (cd "$here" && find images -type f -print0 | sort -z | xargs -0 sha256sum)
  (cd "$repo/testbed/gluetun" && sha256sum $control_files)
  echo "$suite $base_packages"; } | sha256sum | cut -c1-16)

# the base (a slow debootstrap) has its own hash: the package list and its recipe's version (bump
# base_recipe when the base section below changes)
base_recipe=2
base_hash=$(echo "$suite $base_packages $base_recipe" | sha256sum | cut -c1-16)
current() { [ "$(docker image inspect -f "{{index .Config.Labels \"$key\"}}" "$1" 2>/dev/null)" = "${2:-$hash}" ]; }
if [ -z "${FORCE:-}" ] && current "$base" "$base_hash" && current "$gluetun" && current "$wgserver" && current "$target"; then
  say "up to date ($hash)"
  exit 0
fi

t0=$SECONDS
tmp=$(mktemp -d -t realvpn-build.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
log=$tmp/log

if ! command -v debootstrap >/dev/null; then
  say "installing debootstrap"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; } >"$log" 2>&1 ||
    { tail -n 20 "$log" >&2; die "apt-get install debootstrap failed"; }
fi

find_mirror() {
  local f uri
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    for uri in $(awk '/^[[:space:]]*#/ {next}
                      /^deb[[:space:]]/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; break}}
                      /^URIs:/ {for (i = 2; i <= NF; i++) print $i}' "$f"); do
      case ${uri%/} in */debian) echo "${uri%/}"; return 0 ;; esac
    done
  done
  echo http://deb.debian.org/debian
}

# ---- base: debootstrap rootfs, imported (no build containers) ----
if [ -n "${FORCE:-}" ] || ! current "$base" "$base_hash"; then
  mirror=${DEBIAN_MIRROR:-$(find_mirror)}
  root=$tmp/rootfs
  mkdir -p "$CACHE"
  say "debootstrap $suite from $mirror (a minute or two)"
  debootstrap --variant=minbase --include="$base_packages" --cache-dir="$CACHE" "$suite" "$root" "$mirror" \
    >"$log" 2>&1 || { tail -n 30 "$log" >&2; die "debootstrap failed"; }
  for b in wg wireguard-go curl iptables ip busybox dnsmasq nc ping; do
    chroot "$root" sh -c "command -v $b" >/dev/null || die "$b missing from the rootfs"
  done
  # busybox applets for the stand-in's control-server scripts (written for busybox sh)
  mkdir -p "$root/opt/standin/bin"
  chroot "$root" /bin/busybox --install -s /opt/standin/bin
  [ -x "$root/opt/standin/bin/sh" ] && [ -x "$root/opt/standin/bin/nc" ] || die "busybox applets missing"
  rm -rf "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
    "$root"/var/log/* "$root"/tmp/* "$root"/var/tmp/*
  : >"$root/etc/resolv.conf"
  tar --numeric-owner -C "$root" -c . |
    docker import -c "LABEL $ns=1 $key=$base_hash" \
      -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      -c 'CMD ["/bin/sh"]' - "$base" >"$log" 2>&1 || { cat "$log" >&2; die "docker import failed"; }
  rm -rf "$root"
fi

build() { # image, context (Dockerfiles have COPY only: no RUN, so no build container)
  local image=$1 ctx=$2
  grep -q "^FROM $base\$" "$ctx/Dockerfile" || die "$ctx/Dockerfile: unexpected FROM line"
  # legacy builder: BuildKit would try to resolve FROM in a registry
  DOCKER_BUILDKIT=0 docker build -q --label "$ns=1" --label "$key=$hash" \
    -t "$image" "$ctx" >"$log" 2>&1 || { cat "$log" >&2; die "docker build of $image failed"; }
}

cp -r "$here/images" "$tmp/images"
ctx=$tmp/images/gluetun
for f in $control_files; do
  cp "$repo/testbed/gluetun/$f" "$ctx/$f"
  # same scripts, run by busybox's sh (the base's /bin/sh is dash)
  sed -i '1s|^#!/bin/sh$|#!/opt/standin/bin/sh|' "$ctx/$f"
done
chmod -R u+w,a+rX "$tmp/images"
build "$gluetun" "$ctx"
build "$wgserver" "$tmp/images/wgserver"
build "$target" "$tmp/images/target"

# the images these replaced (now dangling)
docker image prune -f --filter "label=$ns.inputs" --filter dangling=true >/dev/null 2>&1 || true
say "built $base $gluetun $wgserver $target ($hash, $((SECONDS - t0))s)"
