#!/usr/bin/env bash
# verify.sh: check the Gluetun stand-in against the answer table in README.md, from the host,
# the way the daemon reaches it (container bridge IP, port 8000).
#   BUILD=1 (default) builds the image from this directory first (legacy builder, no registry)
#   IMAGE=acestream-orchestrator-dev/gluetun:verify   image to build/check
#   RELEASES="v3.38 v3.39 v3.40 v3.41 v3.41.2 master"      releases whose table is checked
#   VERIFY_LABELS="--label k=v ..."                        labels of every container it makes
# One container per release and credential set at a time; every container it made is removed
# on exit. Exits 1 on any mismatch, printing each one. A group of checks whose container
# disappears from outside (a test run's clean-up removing every container labelled
# acestream-orchestrator-test, whatever its value) is retried, up to 3 times.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
IMAGE=${IMAGE:-acestream-orchestrator-dev/gluetun:verify}
RELEASES=${RELEASES:-"v3.38 v3.39 v3.40 v3.41 v3.41.2 master"}
read -r -a LABELS <<<"${VERIFY_LABELS:---label acestream-orchestrator-dev=gluetun-verify --label acestream-orchestrator-test=verify}"
KEY=sekret BUSER=operator BPASS=hunter2 PORT=40555
tmp=$(mktemp -d)
failures=0 checks=0
cleanup() {
  [ ! -s "$tmp/made" ] || xargs docker rm -f <"$tmp/made" >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT

if [ "${BUILD:-1}" = 1 ]; then
  ctx=$tmp/ctx
  cp -r "$here" "$ctx"
  find "$ctx" -type f -exec chmod 644 {} +
  find "$ctx" -maxdepth 1 -type f ! -name Dockerfile -exec chmod 755 {} +
  DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" "$ctx" >"$tmp/build.log" 2>&1 ||
    { cat "$tmp/build.log" >&2; echo "verify: docker build failed" >&2; exit 1; }
fi

fail() { failures=$((failures + 1)); echo "MISMATCH: $*" >>"$tmp/group.log"; }
ok() { checks=$((checks + 1)); }

# ---- containers ------------------------------------------------------------------------
start() { # NAME [docker run args...] -> sets $cid and $cip (waits for the control server)
  local name=$1
  shift
  cid=$(docker run -d --name "gluetun-verify-$$-$name-$RANDOM" "${LABELS[@]}" "$@" "$IMAGE") || return 1
  echo "$cid" >>"$tmp/made"
  cip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$cid")
  wait_ready "$cip" "${CPORT:-8000}"
}
wait_ready() { # IP PORT
  local i
  for i in $(seq 50); do
    curl -s -o /dev/null -m 1 "http://$1:$2/" && return 0
    sleep 0.1
  done
  alive
  fail "control server at $1:$2 never answered"
  return 1
}
stop() { docker rm -f "$1" >/dev/null 2>&1; }
alive() { # the group's container is still ours and running, else end the group (retried)
  [ "$(docker inspect -f '{{.State.Running}}' "$cid" 2>/dev/null)" = true ] && return 0
  echo "verify: container $cid vanished (removed from outside?): retrying this group" >&2
  exit 2
}
health() { docker inspect -f '{{.State.Health.Status}}' "$1" 2>/dev/null; }
wait_health() { # ID STATUS SECONDS
  local i
  for i in $(seq $(($3 * 10))); do [ "$(health "$1")" = "$2" ] && return 0; sleep 0.1; done
  return 1
}

# ---- requests --------------------------------------------------------------------------
# request IP REQ CRED -> $tmp/body, $tmp/head, $code, $ctype
request() {
  local ip=$1 req=$2 cred=$3 method=GET path data=() auth=()
  case $req in
    st) path=/v1/vpn/status ;;
    put) path=/v1/vpn/status method=PUT data=(--data-binary '{"status":"running"}' -H 'Content-Type: application/json') ;;
    ip) path=/v1/publicip/ip ;;
    pf) path=/v1/portforward ;;
    old) path=/v1/openvpn/portforwarded ;;
    unk) path=/v1/nope ;;
    meth) path=/v1/vpn/status method=POST ;;
    *) path=$req ;;
  esac
  case $cred in
    none) ;;
    key) auth=(-H "X-API-Key: $KEY") ;;
    badkey) auth=(-H "X-API-Key: wrong-$KEY") ;;
    qkey) path="$path?api_key=$KEY" ;;
    basic) auth=(-u "$BUSER:$BPASS") ;;
    badbasic) auth=(-u "$BUSER:wrong") ;;
    hdr:*) auth=(-H "${cred#hdr:}") ;;
  esac
  : >"$tmp/head"; : >"$tmp/body"
  code=$(curl -s -m 5 -X "$method" "${data[@]}" "${auth[@]}" -D "$tmp/head" -o "$tmp/body" \
    -w '%{http_code}' "http://$ip:${CPORT:-8000}$path")
  [ "$code" != 000 ] || alive
  ctype=$(tr -d '\r' <"$tmp/head" | sed -n 's/^[Cc]ontent-[Tt]ype: //p')
}
body_is() { printf '%b' "$1" | cmp -s - "$tmp/body"; }
json_field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^\",}]*\).*/\1/p" "$tmp/body"; }

# ---- the table (README.md "Answers per release") ----------------------------------------
TEXT='text/plain; charset=utf-8' HTML='text/html; charset=utf-8'
ST='{"status":"running"}\n'
OUT='{"outcome":"already running"}\n'
ipb() { printf '{"public_ip":"%s","region":"Test Region","country":"Testland","city":"Testville","organization":"AS64496 Example VPN","timezone":"Etc/UTC"}\\n' "$1"; }
IPB=$(ipb 203.0.113.7)
P1="{\"port\":$PORT}\\n"
PM="{\"port\":$PORT,\"ports\":[$PORT]}\\n"
UN='Unauthorized\n'
MOVED='<a href="/v1/portforward">Moved Permanently</a>.\n\n'
WWW='Www-Authenticate: Basic realm="restricted", charset="UTF-8"'
QST="route /status?api_key=$KEY not supported\\n"
QIP="route /ip?api_key=$KEY not supported\\n"
QOLD="route /portforwarded?api_key=$KEY not supported\\n"
# release cfg cred req|code|content-type|body|header ("Name: value" present, "!Name" absent)
# First matching row wins; "*" matches anything, commas list alternatives. Every error
# (400/401/404/405) must also carry "X-Content-Type-Options: nosniff", as http.Error does.
TABLE=$(cat <<EOF
v3.38 * qkey st,put,meth|400|text|$QST|
v3.38 * qkey ip|400|text|$QIP|
v3.38 * qkey old|400|text|$QOLD|
v3.38 * qkey pf|400|text|GET /portforward?api_key=$KEY not found\n|
v3.38 * qkey unk|400|text|GET /nope?api_key=$KEY not found\n|
v3.38 * * st|200|text|$ST|
v3.38 * * put|200|text|$OUT|
v3.38 * * ip|200|text|$IPB|
v3.38 * * pf|400|text|GET /portforward not found\n|
v3.38 * * old|200|text|$P1|
v3.38 * * unk|400|text|GET /nope not found\n|
v3.38 * * meth|400|text|method POST not supported\n|
v3.39,v3.40 * * pf,unk,meth|401|text|$UN|!Www-Authenticate
v3.41.2,master * * unk|404|text|Not Found\n|
v3.41.2,master * * meth|405|text|Method Not Allowed\n|
v3.39,v3.40,v3.41,v3.41.2 none qkey st,put|400|text|$QST|
v3.39,v3.40,v3.41,v3.41.2 none qkey ip|400|text|$QIP|
v3.39,v3.40,v3.41,v3.41.2 none qkey old|400|text|$QOLD|
v3.39,v3.40,v3.41,v3.41.2,master key qkey st,put|400|text|$QST|
v3.39,v3.40,v3.41,v3.41.2,master key qkey ip|400|text|$QIP|
v3.39,v3.40,v3.41,v3.41.2,master key qkey old|400|text|$QOLD|
v3.39,v3.40 none * st|200|text|$ST|
v3.39,v3.40 none * put|200|text|$OUT|
v3.39,v3.40 none * ip|200|text|$IPB|
v3.39,v3.40 none * old|200|text|$P1|
v3.39,v3.40 key key st|200|text|$ST|
v3.39,v3.40 key key put|200|text|$OUT|
v3.39,v3.40 key key ip|200|text|$IPB|
v3.39,v3.40 key key old|200|text|$P1|
v3.39,v3.40 basic basic st|200|text|$ST|
v3.39,v3.40 basic basic put|200|text|$OUT|
v3.39,v3.40 basic basic ip|200|text|$IPB|
v3.39,v3.40 basic basic old|200|text|$P1|
v3.41 * * unk,meth|401|text|$UN|!Www-Authenticate
v3.41.2 none,key qkey pf|200|text|$PM|
v3.41 none,key qkey pf|200|text|$P1|
v3.41,v3.41.2 none * st|200|text|$ST|
v3.41,v3.41.2 none * put|200|text|$OUT|
v3.41,v3.41.2 none * ip|200|text|$IPB|
v3.41.2 none * pf|200|text|$PM|
v3.41 none * pf|200|text|$P1|
v3.41,v3.41.2 none * old|301|html|$MOVED|Location: /v1/portforward
v3.41,v3.41.2 key key st|200|text|$ST|
v3.41,v3.41.2 key key put|200|text|$OUT|
v3.41,v3.41.2 key key ip|200|text|$IPB|
v3.41.2 key key pf|200|text|$PM|
v3.41 key key pf|200|text|$P1|
v3.41,v3.41.2 key key old|301|html|$MOVED|Location: /v1/portforward
v3.41,v3.41.2 basic basic st|200|text|$ST|
v3.41,v3.41.2 basic basic put|200|text|$OUT|
v3.41,v3.41.2 basic basic ip|200|text|$IPB|
v3.41.2 basic basic pf|200|text|$PM|
v3.41 basic basic pf|200|text|$P1|
v3.41,v3.41.2 basic basic old|301|html|$MOVED|Location: /v1/portforward
master * * unk|404|text|Not Found\n|
master * * meth|405|text|Method Not Allowed\n|
master none * st,put,ip,pf,old|401|text|$UN|!Www-Authenticate
master key qkey pf|200|text|$PM|
master key key st|200|text|$ST|
master key key put|200|text|$OUT|
master key key ip|200|text|$IPB|
master key key pf|200|text|$PM|
master key key old|301|html|$MOVED|Location: /v1/portforward
master basic basic st|200|text|$ST|
master basic basic put|200|text|$OUT|
master basic basic ip|200|text|$IPB|
master basic basic pf|200|text|$PM|
master basic basic old|301|html|$MOVED|Location: /v1/portforward
v3.39,v3.40,v3.41,v3.41.2,master key * st,put,ip,pf,old|401|text|$UN|!Www-Authenticate
v3.39,v3.40,v3.41,v3.41.2,master basic badbasic st,put,ip,pf,old|401|text|$UN|!Www-Authenticate
v3.39,v3.40,v3.41,v3.41.2,master basic * st,put,ip,pf,old|401|text|$UN|$WWW
EOF
)
matches() { # FIELD VALUE
  [ "$1" = '*' ] && return 0
  case ",$1," in *",$2,"*) return 0 ;; esac
  return 1
}
expect() { # REL CFG CRED REQ -> $e_code $e_type $e_body $e_hdr, or return 1
  local rel cfg cred req rest
  while IFS= read -r row; do
    read -r rel cfg cred req <<<"${row%%|*}"
    matches "$rel" "$1" && matches "$cfg" "$2" && matches "$cred" "$3" && matches "$req" "$4" || continue
    rest=${row#*|}
    IFS='|' read -r e_code e_type e_body e_hdr <<<"$rest"
    return 0
  done <<<"$TABLE"
  return 1
}
check_answer() { # WHAT CODE TYPE BODY HDR  (against the last request)
  local what=$1 t
  case $3 in text) t=$TEXT ;; html) t=$HTML ;; none|'') t= ;; *) t=$3 ;; esac
  local bad=
  [ "$code" = "$2" ] || bad="$bad code=$code (want $2)"
  [ "$ctype" = "$t" ] || bad="$bad content-type='$ctype' (want '$t')"
  body_is "$4" || bad="$bad body=$(head -c 200 "$tmp/body" | tr '\n' '~') (want $(printf '%s' "$4" | tr '\n' '~'))"
  case $5 in
    '') ;;
    '!'*) ! grep -qi "^${5#!}:" "$tmp/head" || bad="$bad has header ${5#!}" ;;
    *) tr -d '\r' <"$tmp/head" | grep -qiF -x -- "$5" || bad="$bad missing header '$5'" ;;
  esac
  case $2 in 400|401|404|405)
    tr -d '\r' <"$tmp/head" | grep -qi -x 'X-Content-Type-Options: nosniff' || bad="$bad missing nosniff" ;;
  esac
  if [ -n "$bad" ]; then fail "$what:$bad"; else ok; fi
}
check() { # WHAT IP REQ CRED CODE TYPE BODY [HDR]
  request "$2" "$3" "$4"
  check_answer "$1" "$5" "$6" "$7" "${8:-}"
}

# ---- per release: every route x credential, port shapes, log lines ------------------------
# ---- per release: every route x credential, port shapes, log lines ------------------------
group_release() { # REL CFG
  local rel=$1 cfg=$2
  case $cfg in
    none) env=() ;;
    key) env=(-e "STANDIN_API_KEY=$KEY") ;;
    basic) env=(-e "STANDIN_BASIC_USER=$BUSER" -e "STANDIN_BASIC_PASSWORD=$BPASS") ;;
  esac
  start "$rel-$cfg" -e "STANDIN_RELEASE=$rel" -e "STANDIN_FORWARDED_PORT=$PORT" "${env[@]}" || return
  for cred in none key badkey qkey basic badbasic; do
    alive
    for req in st put ip pf old unk meth; do
      if expect "$rel" "$cfg" "$cred" "$req"; then
        request "$cip" "$req" "$cred"
        check_answer "$rel cfg=$cfg cred=$cred $req" "$e_code" "$e_type" "$e_body" "$e_hdr"
      else
        fail "$rel cfg=$cfg cred=$cred $req: no row in the table"
      fi
    done
  done
  # port shapes: several ports, then none; on the route that serves them in this release
  if [ "$cfg" = "$( [ "$rel" = master ] && echo key || echo none)" ]; then
    case $rel in v3.41|v3.41.2|master) route=pf ;; *) route=old ;; esac
    docker exec "$cid" standin-set-port "$PORT" $((PORT + 1))
    case $rel in
      v3.38) want="{\"port\":$PORT}\\n" ;;
      v3.41.2|master) want="{\"port\":$PORT,\"ports\":[$PORT,$((PORT + 1))]}\\n" ;;
      *) want="{\"ports\":[$PORT,$((PORT + 1))]}\\n" ;;
    esac
    check "$rel two ports" "$cip" "$route" key 200 text "$want"
    docker exec "$cid" standin-set-port 0
    case $rel in
      master) want='{"port":0,"ports":[]}\n' ;;
      v3.41.2) want='{"port":0,"ports":null}\n' ;;
      *) want='{"port":0}\n' ;;
    esac
    check "$rel no port" "$cip" "$route" key 200 text "$want"
    # one request line per request, as the release logs it
    alive
    logs=$(docker logs "$cid" 2>&1)
    case $rel in v3.38|v3.39) want="200 GET /status wrote 21B to " ;; *) want="200 GET /v1/vpn/status wrote 21B to " ;; esac
    grep -qE "^[0-9T:-]+Z INFO \[http server\] ${want//\?/\\?}[0-9.]+:[0-9]+ in " <<<"$logs" &&
      ok || fail "$rel: no log line like '... INFO [http server] ${want}IP:PORT in ...'"
    case $rel in
      v3.39|v3.40|v3.41|v3.41.2) grep -q 'WARN \[http server\] route GET /v1/vpn/status is unprotected by default' <<<"$logs" &&
        ok || fail "$rel: no WARN for the public role" ;;
      *) ! grep -q 'unprotected by default' <<<"$logs" && ok || fail "$rel: WARN for a public role it does not have" ;;
    esac
  fi
  alive
  stop "$cid"
}

# ---- default release, runtime controls, restart ------------------------------------------
group_default() {
  start default -e "STANDIN_FORWARDED_PORT=$PORT" || return
  D=$cid
  check "default release is v3.41: /v1/portforward" "$cip" pf none 200 text "$P1"
  check "default release is v3.41: old route" "$cip" old none 301 html "$MOVED" "Location: /v1/portforward"
  wait_health "$D" healthy 5 && ok || fail "default: not healthy at start"

  docker exec "$D" standin-vpn-status crashed
  check "standin-vpn-status crashed" "$cip" st none 200 text '{"status":"crashed"}\n'
  sleep 1.5
  [ "$(health "$D")" = healthy ] && ok || fail "standin-vpn-status crashed changed Docker health"
  docker exec "$D" standin-vpn-status running
  check "standin-vpn-status running" "$cip" st none 200 text "$ST"

  docker exec "$D" standin-public-ip ''
  check "standin-public-ip ''" "$cip" ip none 200 text '{"public_ip":""}\n'
  docker exec "$D" standin-public-ip 198.51.100.9
  check "standin-public-ip IP" "$cip" ip none 200 text "$(ipb 198.51.100.9)"

  # reconnect: watched from outside while it runs
  docker exec -d "$D" standin-reconnect 198.51.100.20
  t0=$(date +%s.%N) seen= empty_ip= final=
  while :; do
    request "$cip" st none; s=$(json_field status)
    [ "${seen##* }" = "$s" ] || seen="$seen $s"
    request "$cip" ip none; [ "$(json_field public_ip)" = "" ] && empty_ip=1
    now=$(date +%s.%N)
    if [ "$s" = running ] && [ "$(json_field public_ip)" = 198.51.100.20 ]; then final=$now; break; fi
    awk -v a="$t0" -v b="$now" 'BEGIN { exit !(b - a > 5) }' && break
  done
  # "starting" lasts T_STARTING only: a poll on a loaded machine may miss it, never the order
  case "$seen " in
    *" stopping "*"starting "*"running "*|*" stopping running "*) ok ;;
    *) fail "standin-reconnect: statuses seen:$seen (want stopping, [starting,] running)" ;;
  esac
  [ -n "$empty_ip" ] && ok || fail "standin-reconnect: public IP never empty meanwhile"
  if [ -n "$final" ]; then
    took=$(awk -v a="$t0" -v b="$final" 'BEGIN { printf "%.1f", b - a }')
    awk -v t="$took" 'BEGIN { exit !(t >= 0.6 && t <= 3) }' && ok || fail "standin-reconnect took ${took}s (want about 1s)"
  else
    fail "standin-reconnect: never back to running with 198.51.100.20"
  fi
  check "after reconnect: port back" "$cip" pf none 200 text "$P1"
  [ "$(health "$D")" = healthy ] && ok || fail "standin-reconnect changed Docker health"

  # PUT /v1/vpn/status, as Gluetun's ApplyStatus
  curl -s -m 5 -X PUT --data-binary '{"status":"stopped"}' -o "$tmp/body" "http://$cip:8000/v1/vpn/status"
  body_is '{"outcome":"stopped"}\n' && ok || fail "PUT stopped: $(cat "$tmp/body")"
  check "after PUT stopped: status" "$cip" st none 200 text '{"status":"stopped"}\n'
  check "after PUT stopped: public IP" "$cip" ip none 200 text '{"public_ip":""}\n'
  check "after PUT stopped: port" "$cip" pf none 200 text '{"port":0}\n'
  curl -s -m 5 -X PUT --data-binary '{"status":"stopped"}' -o "$tmp/body" "http://$cip:8000/v1/vpn/status"
  body_is '{"outcome":"already stopped"}\n' && ok || fail "PUT stopped twice: $(cat "$tmp/body")"
  curl -s -m 5 -X PUT --data-binary '{"status":"running"}' -o "$tmp/body" "http://$cip:8000/v1/vpn/status"
  body_is '{"outcome":"running"}\n' && ok || fail "PUT running: $(cat "$tmp/body")"
  sleep 1
  check "after PUT running: public IP" "$cip" ip none 200 text "$(ipb 198.51.100.20)"
  check "after PUT running: port" "$cip" pf none 200 text "$P1"
  code=$(curl -s -m 5 -X PUT --data-binary '{"status":"paused"}' -o "$tmp/body" -w '%{http_code}' "http://$cip:8000/v1/vpn/status")
  [ "$code" = 400 ] && body_is 'invalid status: paused: possible values are: stopped, running\n' && ok ||
    fail "PUT paused: $code $(cat "$tmp/body")"
  code=$(curl -s -m 5 -X PUT -o "$tmp/body" -w '%{http_code}' "http://$cip:8000/v1/vpn/status")
  [ "$code" = 400 ] && body_is 'EOF\n' && ok || fail "PUT without a body: $code $(cat "$tmp/body")"

  # crash, then the loop's own recovery
  docker exec "$D" standin-crash
  check "standin-crash: status" "$cip" st none 200 text '{"status":"crashed"}\n'
  check "standin-crash: public IP" "$cip" ip none 200 text '{"public_ip":""}\n'
  check "standin-crash: port" "$cip" pf none 200 text '{"port":0}\n'
  sleep 1.5
  [ "$(health "$D")" = healthy ] && ok || fail "standin-crash changed Docker health"
  docker exec "$D" standin-reconnect
  check "recovered: status" "$cip" st none 200 text "$ST"
  check "recovered: public IP" "$cip" ip none 200 text "$(ipb 198.51.100.20)"
  check "recovered: port" "$cip" pf none 200 text "$P1"

  # Docker health follows the flag only
  docker exec "$D" standin-health off
  wait_health "$D" unhealthy 3 && ok || fail "standin-health off: still $(health "$D")"
  check "unhealthy: control server unchanged" "$cip" st none 200 text "$ST"
  docker exec "$D" standin-health on
  wait_health "$D" healthy 3 && ok || fail "standin-health on: still $(health "$D")"

  # today's controls and the direct file write an existing test uses
  docker exec "$D" standin-set-port 40002
  check "standin-set-port N" "$cip" pf none 200 text '{"port":40002}\n'
  docker exec "$D" sh -c 'echo '\''{"public_ip": "198.51.100.1"}'\'' > /run/standin/www/v1/publicip/ip'
  check "public IP file written directly" "$cip" ip none 200 text '{"public_ip": "198.51.100.1"}\n'

  # a restart resets everything
  alive
  docker restart -t 1 "$D" >/dev/null
  # a restart may give it another address (its old one to a container started meanwhile)
  cip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$D")
  wait_ready "$cip" 8000
  check "after restart: status" "$cip" st none 200 text "$ST"
  check "after restart: public IP" "$cip" ip none 200 text "$IPB"
  check "after restart: port" "$cip" pf none 200 text "$P1"
  wait_health "$D" healthy 5 && ok || fail "after restart: $(health "$D")"
  alive
  stop "$D"
}

# ---- env: start unhealthy, log off + other address, default role, auth routes, bad release ----
group_env() {
  start unhealthy -e STANDIN_START_UNHEALTHY=1 && {
    wait_health "$cid" unhealthy 3 && ok || fail "STANDIN_START_UNHEALTHY=1: $(health "$cid")"
    docker exec "$cid" standin-health on
    wait_health "$cid" healthy 3 && ok || fail "STANDIN_START_UNHEALTHY=1 then on: $(health "$cid")"
    alive
    stop "$cid"
  }
  CPORT=9000 start logoff -e HTTP_CONTROL_SERVER_LOG=off -e HTTP_CONTROL_SERVER_ADDRESS=:9000 && {
    CPORT=9000 check "HTTP_CONTROL_SERVER_ADDRESS=:9000" "$cip" st none 200 text "$ST"
    logs=$(docker logs "$cid" 2>&1)
    ! grep -q 'INFO \[http server\] [0-9][0-9][0-9] ' <<<"$logs" && ok || fail "HTTP_CONTROL_SERVER_LOG=off still logs requests"
    alive
    stop "$cid"
  }
  start defaultrole -e STANDIN_RELEASE=v3.41 -e 'HTTP_CONTROL_SERVER_AUTH_DEFAULT_ROLE={"auth":"apikey","apikey":"dr-key"}' && {
    check "v3.41 default role: right key" "$cip" st "hdr:X-API-Key: dr-key" 200 text "$ST"
    check "v3.41 default role: no key" "$cip" st none 401 text "$UN"
    check "v3.41 default role: portforward" "$cip" pf "hdr:X-API-Key: dr-key" 200 text '{"port":0}\n'
    alive
    stop "$cid"
  }
  start defaultrole40 -e STANDIN_RELEASE=v3.40 -e 'HTTP_CONTROL_SERVER_AUTH_DEFAULT_ROLE={"auth":"apikey","apikey":"dr-key"}' && {
    check "v3.40 ignores HTTP_CONTROL_SERVER_AUTH_DEFAULT_ROLE" "$cip" st none 200 text "$ST"
    alive
    stop "$cid"
  }
  start v3413 -e STANDIN_RELEASE=v3.41.3 -e "STANDIN_FORWARDED_PORT=$PORT" && {
    check "STANDIN_RELEASE=v3.41.3 is the v3.41.2+ line: unknown route" "$cip" unk none 404 text 'Not Found\n'
    check "STANDIN_RELEASE=v3.41.3 is the v3.41.2+ line: port" "$cip" pf none 200 text "$PM"
    alive
    stop "$cid"
  }
  start v3411 -e STANDIN_RELEASE=v3.41.1 && {
    check "STANDIN_RELEASE=v3.41.1 is the v3.41.0-v3.41.1 line: unknown route" "$cip" unk none 401 text "$UN"
    alive
    stop "$cid"
  }
  start someroutes -e STANDIN_RELEASE=v3.41 -e "STANDIN_API_KEY=$KEY" -e 'STANDIN_AUTH_ROUTES=GET /v1/vpn/status, GET /v1/portforward' && {
    check "STANDIN_AUTH_ROUTES: covered" "$cip" st key 200 text "$ST"
    check "STANDIN_AUTH_ROUTES: not covered, no public role left" "$cip" ip key 401 text "$UN"
    alive
    stop "$cid"
  }
  for bad in "STANDIN_RELEASE=v9" "STANDIN_RELEASE=v3.40 STANDIN_API_KEY=$KEY STANDIN_AUTH_ROUTES=GET /v1/portforward"; do
    args=()
    case $bad in *AUTH_ROUTES*) args=(-e STANDIN_RELEASE=v3.40 -e "STANDIN_API_KEY=$KEY" -e "STANDIN_AUTH_ROUTES=GET /v1/portforward") ;;
      *) args=(-e "$bad") ;; esac
    cid=$(docker run -d --name "gluetun-verify-$$-bad-$RANDOM" "${LABELS[@]}" "${args[@]}" "$IMAGE")
    echo "$cid" >>"$tmp/made"
    rc=$(timeout 10 docker wait "$cid")
    [ "$rc" = 1 ] && ok || fail "$bad: container should exit 1 at start (got '${rc:-running}')"
    stop "$cid"
  done
}

# run_group FUNCTION ARGS...: in a subshell (own counters), retried if its container vanished
run_group() {
  local attempt rc
  for attempt in 1 2 3 4; do
    : >"$tmp/group.log"
    (checks=0 failures=0; "$@"; echo "$checks $failures" >"$tmp/group.counts")
    rc=$?
    [ "$rc" = 2 ] || break
  done
  if [ "$rc" = 2 ]; then
    failures=$((failures + 1)); echo "MISMATCH: $*: container removed from outside 4 times" >&2
    return
  fi
  cat "$tmp/group.log" >&2
  local c f
  read -r c f <"$tmp/group.counts" || { c=0 f=1; echo "MISMATCH: $*: group did not finish" >&2; }
  checks=$((checks + c)) failures=$((failures + f))
}

for rel in $RELEASES; do
  for cfg in none key basic; do run_group group_release "$rel" "$cfg"; done
done
run_group group_default
run_group group_env

echo "verify: $checks checks passed, $failures mismatches"
[ "$failures" = 0 ]
