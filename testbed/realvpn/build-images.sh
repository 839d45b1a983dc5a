#!/usr/bin/env bash
# Build the real-Gluetun test bed's images, with no registry:
#
#   acestream-orchestrator-test/gt-base:bookworm    debootstrap --variant=minbase bookworm (the Debian
#                                                   mirror apt uses) + iptables iproute2 wireguard-tools
#                                                   curl busybox ..., then `docker import`
#   acestream-orchestrator-test/gt-gluetun:v3.39.1  the real Gluetun v3.39.1 binary with upstream's final
#                                                   stage (ENV, ENTRYPOINT, EXPOSE, HEALTHCHECK verbatim)
#   acestream-orchestrator-test/gt-wgserver:latest  wireguard-go + wg + iptables NAT: a WireGuard server
#   acestream-orchestrator-test/gt-target:latest    busybox httpd :80 + dnsmasq :53: the "internet"
#
# The binaries and image contexts come from the shared tools ($repo/../shared/tools/gluetun, read-only);
# they are copied to a scratch folder for each build and never into this repository. When that folder is
# absent the script prints "skipped" and exits 0 (the realvpn tests then skip themselves).
#
# Every image carries acestream-orchestrator-test=1 and acestream-orchestrator-test.inputs=<hash of this
# script, the shared contexts and binaries, the package lists>; nothing is built when all four carry the
# current hash (FORCE=1 rebuilds anyway). Root, Docker and apt-get; installs debootstrap when missing.
# Env: DEBIAN_MIRROR (default: the first .../debian URI in /etc/apt/sources.list*).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
shared=${REALVPN_SHARED:-$repo/../shared/tools/gluetun}
ns=acestream-orchestrator-test
key=$ns.inputs
suite=bookworm
base=$ns/gt-base:bookworm
gluetun=$ns/gt-gluetun:v3.39.1
wgserver=$ns/gt-wgserver:latest
target=$ns/gt-target:latest
base_packages=iptables,ca-certificates,iproute2,wireguard-tools,busybox,tzdata,netcat-openbsd,curl,procps,iputils-ping
# Gluetun v3.39.1 refuses to start without openvpn 2.5/2.6 and unbound (it prints their versions):
# Debian's, fetched as .debs on the host, stand in for Alpine's. Kept explicit: dpkg -i fails loudly
# when one is missing.
gluetun_debs="openvpn unbound libevent-2.1-7 libprotobuf-c1 libpython3.11-minimal media-types libnsl2
  readline-common libreadline8 libsqlite3-0 libpython3.11-stdlib libexpat1 libpython3.11 liblzo2-2
  libnl-3-200 libnl-genl-3-200 libpkcs11-helper1"
target_debs="dnsmasq-base libdbus-1-3 libnftables1 libjansson4"
CACHE=/var/cache/acestream-orchestrator/debootstrap-realvpn

say() { echo "realvpn/build-images: $*"; }
die() { echo "realvpn/build-images: ERROR: $*" >&2; exit 1; }

if [ ! -d "$shared" ]; then
  say "skipped: $shared is absent (the shared Gluetun tools); nothing built"
  exit 0
fi
for f in bin/gluetun bin/wireguard-go images/gluetun/Dockerfile images/wgserver/Dockerfile \
         images/wgserver/entrypoint.sh images/target/Dockerfile images/target/entrypoint.sh; do
  [ -f "$shared/$f" ] || die "$shared/$f missing"
done
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot)"
docker info >/dev/null 2>&1 || die "no Docker engine answers (bash scripts/ensure-docker.sh)"

hash=$({ sha256sum <"$here/build-images.sh"
  (cd "$shared" && find bin images -type f -print0 | sort -z | xargs -0 sha256sum)
  echo "$suite $base_packages $gluetun_debs $target_debs"; } | sha256sum | cut -c1-16)

current() { [ "$(docker image inspect -f "{{index .Config.Labels \"$key\"}}" "$1" 2>/dev/null)" = "$hash" ]; }
if [ -z "${FORCE:-}" ] && current "$base" && current "$gluetun" && current "$wgserver" && current "$target"; then
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
if [ -n "${FORCE:-}" ] || ! current "$base"; then
  mirror=${DEBIAN_MIRROR:-$(find_mirror)}
  root=$tmp/rootfs
  mkdir -p "$CACHE"
  say "debootstrap $suite from $mirror (about a minute)"
  debootstrap --variant=minbase --include="$base_packages" --cache-dir="$CACHE" "$suite" "$root" "$mirror" \
    >"$log" 2>&1 || { tail -n 30 "$log" >&2; die "debootstrap failed"; }
  for b in wg curl iptables ip busybox; do
    chroot "$root" sh -c "command -v $b" >/dev/null || die "$b missing from the rootfs"
  done
  rm -rf "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
    "$root"/var/log/* "$root"/tmp/* "$root"/var/tmp/*
  : >"$root/etc/resolv.conf"
  tar --numeric-owner -C "$root" -c . |
    docker import -c "LABEL $ns=1 $key=$hash" \
      -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      -c 'CMD ["/bin/sh"]' - "$base" >"$log" 2>&1 || { cat "$log" >&2; die "docker import failed"; }
  rm -rf "$root"
fi

# ---- .debs from the host's apt (the mirror apt uses) ----
apt-cache policy openvpn dnsmasq-base 2>/dev/null | grep -q 'Candidate: [0-9]' ||
  apt-get update -qq >"$log" 2>&1 || { tail -n 20 "$log" >&2; die "apt-get update failed"; }
fetch_debs() { # dir, packages...
  local dir=$1; shift
  mkdir -p "$dir"
  (cd "$dir" && apt-get download -qq "$@") >"$log" 2>&1 || { cat "$log" >&2; die "apt-get download $* failed"; }
}

# The shared Dockerfiles say FROM gt-base:bookworm: point them at this project's base and mask the base's
# acestream-orchestrator-test=1 label for the RUN step's container (a concurrent test clean-up removes
# containers with that label); the final --label puts it back on the image.
build() { # image, context
  local image=$1 ctx=$2
  sed -i -e "s#^FROM gt-base:bookworm#FROM $base\nLABEL $ns=build#" "$ctx/Dockerfile"
  grep -q "^FROM $base" "$ctx/Dockerfile" || die "$ctx/Dockerfile: unexpected FROM line"
  # legacy builder: BuildKit would try to resolve FROM in a registry
  DOCKER_BUILDKIT=0 docker build -q --label "$ns=1" --label "$key=$hash" \
    -t "$image" "$ctx" >"$log" 2>&1 || { cat "$log" >&2; die "docker build of $image failed"; }
}

ctx=$tmp/gluetun
cp -r "$shared/images/gluetun" "$ctx"
chmod -R u+w "$ctx"
cp "$shared/bin/gluetun" "$ctx/gluetun"
# shellcheck disable=SC2086
fetch_debs "$ctx/debs" $gluetun_debs
build "$gluetun" "$ctx"

ctx=$tmp/wgserver
cp -r "$shared/images/wgserver" "$ctx"
cp "$shared/bin/wireguard-go" "$ctx/"
chmod -R u+w "$ctx"
build "$wgserver" "$ctx"

ctx=$tmp/target
cp -r "$shared/images/target" "$ctx"
chmod -R u+w "$ctx"
# shellcheck disable=SC2086
fetch_debs "$ctx/debs" $target_debs
build "$target" "$ctx"

# the images these replaced (now dangling)
docker image prune -f --filter "label=$ns=1" >/dev/null 2>&1 || true
docker run --rm --label "$ns=build" --entrypoint /bin/sh "$gluetun" -c 'test -x /gluetun-entrypoint && unbound -V >/dev/null && test -x /usr/sbin/openvpn2.6' >/dev/null \
  || die "$gluetun: sanity check failed"
say "built $base $gluetun $wgserver $target ($hash, $((SECONDS - t0))s)"
