#!/bin/sh
# Gluetun stand-in. Env: STANDIN_START_UNHEALTHY=1 (start with the health flag off),
# STANDIN_FORWARDED_PORT (default 0 = none), STANDIN_PUBLIC_IP, STANDIN_API_KEY (all
# control routes then need header X-API-Key), HTTP_CONTROL_SERVER_ADDRESS (as Gluetun,
# default ":8000").
set -e
export STANDIN_DOCROOT=/run/standin/www
# state is rebuilt on every start: a `docker restart` resets it, as with the real Gluetun
rm -rf /run/standin && mkdir -p /run/standin && cp -a /standin/www "$STANDIN_DOCROOT"
[ -z "$STANDIN_PUBLIC_IP" ] ||
  printf '{"public_ip": "%s", "country": "Testland"}\n' "$STANDIN_PUBLIC_IP" >"$STANDIN_DOCROOT/v1/publicip/ip"
standin-set-port "${STANDIN_FORWARDED_PORT:-0}"
standin-vpn-status running
if [ "${STANDIN_START_UNHEALTHY:-0}" = 1 ]; then standin-health off; else standin-health on; fi
addr=${HTTP_CONTROL_SERVER_ADDRESS:-:8000}
exec /usr/local/bin/standin-run "${addr##*:}"
