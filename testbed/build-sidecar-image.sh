#!/usr/bin/env bash
# Everything the sidecar tests (tests/sidecar) need; idempotent, quick when nothing changed:
#   docker-compose, debootstrap                      Debian's packages, installed when missing
#   acestream-orchestrator-test/python-base:bookworm testbed/build-base-image.sh (no registry)
#   acestream-orchestrator-test/orchestrator:latest  the repository's Dockerfile FROM that base,
#                                                    labelled acestream-orchestrator-test=1
# The Docker layer cache keeps the dependency layer while only the daemon's sources change.
set -euo pipefail
cd "$(dirname "$0")/.."
ns=acestream-orchestrator-test
base=$ns/python-base:bookworm
image=${DAEMON_IMAGE:-$ns/orchestrator:latest}  # DAEMON_IMAGE: another tag, e.g. for a second checkout
say() { echo "build-sidecar-image: $*"; }
die() { echo "build-sidecar-image: ERROR: $*" >&2; exit 1; }

# one apt run for what is missing (build-base-image.sh would install debootstrap by itself)
pkgs=()
command -v docker-compose >/dev/null || pkgs+=(docker-compose)
command -v debootstrap >/dev/null || pkgs+=(debootstrap)
if [ ${#pkgs[@]} -gt 0 ]; then
  say "installing ${pkgs[*]}"
  log=$(mktemp)
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}"; } >"$log" 2>&1 ||
    { tail -n 20 "$log" >&2; rm -f "$log"; die "apt-get install ${pkgs[*]} failed"; }
  rm -f "$log"
fi

bash testbed/build-base-image.sh

t0=$SECONDS
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# legacy builder: BuildKit would try to resolve the local base image in a registry
DOCKER_BUILDKIT=0 docker build -q --build-arg BASE_IMAGE="$base" --label "$ns=1" -t "$image" . >"$log" 2>&1 ||
  { cat "$log" >&2; die "docker build failed"; }
# drop the images this one replaced (dangling, labelled)
docker image prune -f --filter "label=$ns=1" >/dev/null 2>&1 || true
say "built $image from $base ($((SECONDS - t0))s)"
