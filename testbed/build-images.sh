#!/usr/bin/env bash
# Build the stand-in images from Debian's busybox-static, without any registry:
#   acestream-orchestrator-test/busybox:latest            rootfs of /bin/busybox + applet links
#   acestream-orchestrator-test/engine:latest             acestream-http-proxy family (testbed/engine)
#   acestream-orchestrator-test/engine-jopsis:latest      jopsis/acestream:x64 family
#   acestream-orchestrator-test/engine-jopsis-arm:latest  jopsis ARM family
#   acestream-orchestrator-test/engine-aceserve:latest    AceServe family
#   acestream-orchestrator-test/gluetun:latest            Gluetun's control server, by release (testbed/gluetun)
# Every image carries label acestream-orchestrator-test=1 (so do the containers made from
# them, whoever creates those) and acestream-orchestrator-test.inputs=<hash of the inputs>;
# nothing is built when every image carries the current hash. FORCE=1 rebuilds anyway.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ns=acestream-orchestrator-test
key=$ns.inputs
busybox=/bin/busybox
images=(busybox engine engine-jopsis engine-jopsis-arm engine-aceserve gluetun)
[ -x "$busybox" ] || { echo "build-images: $busybox missing: run scripts/ensure-docker.sh" >&2; exit 1; }

# inputs: this script, the stand-in sources, the busybox binary (modes are set below)
hash=$(cd "$here" && { find build-images.sh engine gluetun -type f -print0 | sort -z | xargs -0 sha256sum
  sha256sum <"$busybox"; } | sha256sum | cut -c1-16)

current() { [ "$(docker image inspect -f "{{index .Config.Labels \"$key\"}}" "$ns/$1:latest" 2>/dev/null)" = "$hash" ]; }
if [ -z "${FORCE:-}" ]; then
  stale=0
  for image in "${images[@]}"; do current "$image" || stale=1; done
  if [ $stale = 0 ]; then echo "build-images: up to date ($hash)"; exit 0; fi
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
log=$tmp/build.log
fail() { cat "$log" >&2; echo "build-images: ERROR: $*" >&2; exit 1; }

# base: busybox-static rootfs; --install -s inside a chroot links every applet to /bin/busybox
root=$tmp/rootfs
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,etc,root,run,tmp,proc,sys,dev}
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
chroot "$root" /bin/busybox --install -s
echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
echo 'root:x:0:' >"$root/etc/group"
tar --numeric-owner -C "$root" -c . |
  docker import -c "LABEL $ns=1 $key=$hash" -c 'CMD ["/bin/sh"]' - "$ns/busybox:latest" >"$log" 2>&1 ||
  fail "docker import failed"

# the engine families (testbed/engine/build.sh) and the Gluetun stand-in, FROM that base
BASE_IMAGE=$ns/busybox:latest bash "$here/engine/build.sh" "$ns" --label "$key=$hash" >"$log" 2>&1 ||
  fail "engine stand-ins failed to build"
ctx=$tmp/gluetun
cp -r "$here/gluetun" "$ctx"
# git keeps only the x bit: set modes here so the build does not depend on a checkout
find "$ctx" -type f -exec chmod 644 {} +
find "$ctx" -maxdepth 1 -type f ! -name Dockerfile ! -name README.md -exec chmod 755 {} +
# legacy builder: BuildKit would try to resolve FROM in a registry
DOCKER_BUILDKIT=0 docker build -q --label "$key=$hash" -t "$ns/gluetun:latest" "$ctx" >"$log" 2>&1 ||
  fail "docker build of gluetun failed"
# drop the images these replaced
docker image prune -f --filter "label=$ns=1" >/dev/null 2>&1 || true
echo "build-images: built $ns/{$(IFS=,; echo "${images[*]}")}:latest ($hash)"
