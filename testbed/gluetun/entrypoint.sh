#!/bin/sh
# Gluetun stand-in: see README.md. State is rebuilt on every start: a `docker restart`
# resets it, as with the real Gluetun.
set -e
. "${STANDIN_BIN:-/usr/local/bin}/gluetun-lib"
if [ -n "${REL_INVALID:-}" ]; then
  standin_note "STANDIN_RELEASE=$REL_INVALID: use v3.38, v3.39, v3.40, v3.41, v3.41.2 or master"
  exit 1
fi
# Gluetun refuses to start on a bad auth configuration (settings.go Validate)
if [ "$REL" != v3.38 ]; then
  if [ -n "${STANDIN_BASIC_USER:-}" ] && [ -z "${STANDIN_BASIC_PASSWORD:-}" ]; then
    glog ERROR "" "creating control server: validating auth settings: role basic (1 of 1): for role basic: password is empty"
    exit 1
  fi
  if [ -n "$FILE_ROLES" ]; then
    n=0
    while IFS= read -r route; do
      n=$((n + 1))
      in_list "$VALID_ROUTES" "$route" ||
        { glog ERROR "" "creating control server: validating auth settings: route $n: route not supported by the control server: $route"; exit 1; }
    done <<ROUTES
$ROLE_ROUTES
ROUTES
  fi
  case $DR_AUTH in ''|none|apikey|basic) ;;
    *) glog ERROR "" "setting default role: validating default role: authentication method not supported: $DR_AUTH"; exit 1 ;;
  esac
fi
ports=$(valid_ports ${STANDIN_FORWARDED_PORT:-0}) ||
  { standin_note "STANDIN_FORWARDED_PORT=$STANDIN_FORWARDED_PORT: want port numbers"; exit 1; }

rm -rf "$S" && mkdir -p "$S/www/v1/publicip"
put "$S/gen" 0
put "$S/status" running
put "$S/tunnel_ip" "${STANDIN_PUBLIC_IP-203.0.113.7}"
set_served_ip "${STANDIN_PUBLIC_IP-203.0.113.7}"
put "$S/tunnel_ports" "$ports"
put "$S/ports" "$ports"
if [ "${STANDIN_START_UNHEALTHY:-0}" = 1 ]; then standin-health off; else standin-health on; fi

addr=${HTTP_CONTROL_SERVER_ADDRESS:-:8000}
port=${addr##*:}
auth="no credentials"
[ -z "$APIKEY" ] || auth="apikey role"
[ -z "$BUSER" ] || auth="${APIKEY:+apikey and }basic role"
[ -z "$DR_AUTH" ] || auth="$auth, default role $DR_AUTH"
[ "$REL" != v3.38 ] || [ -z "$APIKEY$BUSER" ] || auth="$auth (ignored: v3.38 has no auth)"
standin_note "Gluetun $REL control server, $auth, port $port"
case $addr in :*) glog INFO "http server" "http server listening on [::]:$port" ;;
  *) glog INFO "http server" "http server listening on $addr" ;; esac
exec "${STANDIN_BIN:-/usr/local/bin}/gluetun-run" "$port"
