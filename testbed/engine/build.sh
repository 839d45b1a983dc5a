#!/usr/bin/env bash
# Build the engine stand-in family, FROM the busybox base, without any registry:
#   build.sh [NAMESPACE] [extra `docker build` args, e.g. --label key=value]
#     NAMESPACE/engine:latest             acestream-http-proxy (the default family)
#     NAMESPACE/engine-jopsis:latest      jopsis/acestream:x64
#     NAMESPACE/engine-jopsis-arm:latest  jopsis/acestream:arm32-*/arm64-*
#     NAMESPACE/engine-aceserve:latest    ghcr.io/krinkuto11/acestream:latest-* (AceServe)
# NAMESPACE defaults to acestream-orchestrator-test. BASE_IMAGE (default
# acestream-orchestrator-test/busybox:latest, made by testbed/build-images.sh) is the FROM.
# Each build context is the family's directory plus common/ as lib/; modes are set here so the
# build does not depend on a checkout. No RUN steps: nothing executes at build time.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ns=${1:-acestream-orchestrator-test}
[ $# -eq 0 ] || shift
base=${BASE_IMAGE:-acestream-orchestrator-test/busybox:latest}
die() { echo "engine/build: ERROR: $*" >&2; exit 1; }
docker image inspect "$base" >/dev/null 2>&1 || die "base image $base missing: run testbed/build-images.sh"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
built=()
for family in acestream-http-proxy jopsis jopsis-arm aceserve; do
  case $family in
    acestream-http-proxy) image=$ns/engine:latest ;;
    *) image=$ns/engine-$family:latest ;;
  esac
  ctx=$tmp/$family
  cp -r "$here/$family" "$ctx"
  mkdir -p "$ctx/lib"
  cp -r "$here/common/." "$ctx/lib/"
  case $family in
    acestream-http-proxy) mkdir -p "$ctx/app" "$ctx/home" && cp "$here/common/standin-engine" "$ctx/app/start-engine" ;;
    jopsis) mkdir -p "$ctx/empty" ;;
  esac
  find "$ctx" -type d -exec chmod 755 {} +
  find "$ctx" -type f -exec chmod 644 {} +
  for f in lib/standin-engine lib/standin-serve lib/standin-api lib/python app/start-engine \
           entrypoint.sh catatonit; do
    [ ! -f "$ctx/$f" ] || chmod 755 "$ctx/$f"
  done
  # legacy builder: BuildKit would try to resolve FROM in a registry
  DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE=$base" "$@" -t "$image" "$ctx" \
    >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log" >&2; die "docker build of $image failed"; }
  built+=("$image")
done
echo "engine/build: built ${built[*]}"
