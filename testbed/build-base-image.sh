#!/usr/bin/env bash
# Build a Python 3.11 base image from Debian packages, without any registry, so that the
# orchestrator's Dockerfile (ARG BASE_IMAGE, default python:3.11-slim) can be built here:
#
#   acestream-orchestrator-test/python-base:bookworm
#       debootstrap --variant=minbase bookworm + python3 python3-venv ca-certificates,
#       trimmed (apt lists and caches, docs, man pages, locales), then `docker import`.
#
# The image does not carry the label acestream-orchestrator-test=1 on purpose: containers of a
# `docker build` FROM it would inherit it, and a concurrent test cleanup would kill them.
# Nothing is built when the image carries the current inputs hash (this script, the package
# list, the host's CA bundle); FORCE=1 rebuilds anyway. The .debs are kept in $CACHE so a
# rebuild on the same machine downloads nothing.
#
# The host's CA bundle is copied in and PIP_CERT points at it: on machines whose egress goes
# through an intercepting proxy, pip inside `docker build` must trust what the host trusts.
#
# Env: DEBIAN_MIRROR (default: the first Debian archive URI in /etc/apt/sources.list*, else
# http://deb.debian.org/debian). Installs debootstrap when missing (apt-get update first).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ns=acestream-orchestrator-test
image=$ns/python-base:bookworm
key=$ns.inputs
suite=bookworm
packages=python3,python3-venv,ca-certificates
cabundle=/etc/ssl/certs/ca-certificates.crt
CACHE=/var/cache/acestream-orchestrator/debootstrap

say() { echo "build-base-image: $*"; }
die() { echo "build-base-image: ERROR: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot)"

hash=$({ sha256sum <"$here/build-base-image.sh"; echo "$suite $packages"
  if [ -f "$cabundle" ]; then sha256sum <"$cabundle"; fi; } | sha256sum | cut -c1-16)

if [ -z "${FORCE:-}" ] &&
  [ "$(docker image inspect -f "{{index .Config.Labels \"$key\"}}" "$image" 2>/dev/null)" = "$hash" ]; then
  say "up to date ($image, $hash)"
  exit 0
fi

if ! command -v debootstrap >/dev/null; then
  say "installing debootstrap"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; } \
    >/tmp/build-base-image.apt.log 2>&1 || { tail -n 20 /tmp/build-base-image.apt.log >&2; die "apt-get install debootstrap failed"; }
fi

# The Debian archive apt already uses (deb822 .sources or one-line .list; disabled files skipped).
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
mirror=${DEBIAN_MIRROR:-$(find_mirror)}

t0=$SECONDS
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
root=$tmp/rootfs
log=$tmp/debootstrap.log
mkdir -p "$CACHE"
say "debootstrap $suite from $mirror (log on failure)"
debootstrap --variant=minbase --include="$packages" --cache-dir="$CACHE" "$suite" "$root" "$mirror" \
  >"$log" 2>&1 || { tail -n 30 "$log" >&2; die "debootstrap failed"; }
[ -x "$root/usr/bin/python3" ] || die "python3 missing from the rootfs"

# trim what a runtime base does not need (apt itself stays usable after `apt-get update`)
rm -rf "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
  "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
  "$root"/var/log/* "$root"/tmp/* "$root"/var/tmp/*
# the host's trust store (see the header), and a resolv.conf Docker replaces at run time
if [ -f "$cabundle" ]; then cp "$cabundle" "$root/etc/ssl/certs/ca-certificates.crt"; fi
: >"$root/etc/resolv.conf"

tar --numeric-owner -C "$root" -c . |
  docker import \
    -c "LABEL $key=$hash org.opencontainers.image.description=\"Debian $suite python3, made by testbed/build-base-image.sh\"" \
    -c 'ENV LANG=C.UTF-8 PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    -c 'CMD ["python3"]' - "$image" >"$log" 2>&1 || { cat "$log" >&2; die "docker import failed"; }
docker image prune -f --filter "label=$key" >/dev/null 2>&1 || true
say "built $image ($hash, $(docker run --rm "$image" python3 -V 2>&1), $((SECONDS - t0))s)"
