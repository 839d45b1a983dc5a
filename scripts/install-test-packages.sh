#!/usr/bin/env bash
# Every Debian package `make test` needs, in one apt run, before anything runs in parallel.
#
# The suites and image builds run side by side (`make test`), and two apt-get runs at once
# fail on apt's lock; so whatever is missing of the list below is installed here, once, first.
# The scripts that need a package still install it when run alone (`make realvpn-images`).
#
#   docker.io busybox-static  the Docker engine; the stand-in images (scripts/ensure-docker.sh)
#   debootstrap               the Debian bases of the real-tunnel lane, the socket proxy, the sidecar
#   docker-compose            compose/ validated and run (tests/sidecar)
#   chromium                  the status page's browser tests (tests/integration/cdp.py)
#   docker-registry           a registry on loopback for the pull tests (test_image_freshness.py)
#   prometheus                the monitoring profile's config and dashboard queries run (test_monitoring.py)
set -euo pipefail

say() { echo "install-test-packages: $*"; }

wanted=(docker.io busybox-static debootstrap docker-compose chromium docker-registry prometheus)
missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} = 0 ]; then
  say "all present"
  exit 0
fi

# packages with an init script (docker.io, docker-registry, prometheus) must not start a service of their own
tmp_policy=
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && tmp_policy=1
fi
trap '[ -z "$tmp_policy" ] || rm -f /usr/sbin/policy-rc.d' EXIT

t0=$SECONDS
log=$(mktemp)
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  rm -f "$log"
  echo "install-test-packages: ERROR: apt-get install ${missing[*]} failed" >&2
  exit 1
fi
rm -f "$log"
say "installed ${missing[*]} ($((SECONDS - t0))s)"
