#!/usr/bin/env bash
# verify.sh: build the engine stand-ins under a scratch namespace and check every family against
# what the real images do (see README.md). Exits non-zero on any failure.
#   NS=acestream-orchestrator-dev testbed/engine/verify.sh
# Env: NS (image namespace, default acestream-orchestrator-dev); KEEP_IMAGES=1 keeps the built
# images; ACEXY (default ../shared/tools/acexy/acexy beside the repository) runs the real acexy proxy against the
# default family when present; TEST_LABEL=1 also labels containers acestream-orchestrator-test=dev.
#
# Per family, all in one network namespace owned by a busybox container:
#   A, B  distinct HTTP/HTTPS/API/P2P ports, passed the way the daemon must pass them -> both
#         ready; A's /standin/info flags and ports; a getstream session on A (a few KB of
#         MPEG-TS from playback_url, stat_url live, command_url?method=stop, stat_url gone,
#         playback_url 500); the real acexy streams through B (default family); SIGTERM stops
#         A within 3 s with exit code 0
#   C, D  no API port given (both on the default 62062) -> C ready, D exits non-zero with
#         "cannot listen on TCP port 62062"
# The default family also checks that CONF and a given command are ignored (C, D use env only).
#
# The images are built FROM a label-free busybox base imported here (not
# acestream-orchestrator-test/busybox): containers carrying the label KEY acestream-orchestrator-test
# (whatever its value) are removed by testkit/harness.py:remove_test_containers, which
# the test suites run at any time. Containers here carry acestream-orchestrator-dev=engine-verify and
# acestream-orchestrator-dev.run=<run id>, and are all removed on exit.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ns=${NS:-acestream-orchestrator-dev}
base=$ns/engine-verify-busybox:latest
run=enx-$$
labels=(--label acestream-orchestrator-dev=engine-verify --label "acestream-orchestrator-dev.run=$run")
[ -z "${TEST_LABEL:-}" ] || labels+=(--label acestream-orchestrator-test=dev)
acexy=${ACEXY:-$(cd "$(dirname "$0")/../../.." && pwd)/shared/tools/acexy/acexy}
failures=0
tmp=$(mktemp -d)

cleanup() {
  local ids
  ids=$(docker ps -aq --filter "label=acestream-orchestrator-dev.run=$run")
  # shellcheck disable=SC2086
  [ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1
  [ -z "${acexy_pid:-}" ] || kill "$acexy_pid" 2>/dev/null
  if [ -z "${KEEP_IMAGES:-}" ]; then
    docker rmi "$ns/engine:latest" "$ns/engine-jopsis:latest" "$ns/engine-jopsis-arm:latest" \
      "$ns/engine-aceserve:latest" >/dev/null 2>&1
    [ -n "${BASE_IMAGE:-}" ] || docker rmi "$base" >/dev/null 2>&1
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

say() { echo "verify: $*"; }
pass() { say "PASS $family: $*"; }
fail() { say "FAIL $family: $*"; failures=$((failures + 1)); }
check() { # DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
# py EXPR: evaluate EXPR with d = the JSON on stdin; prints the result
py() { python3 -c 'import json, sys; d = json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }

# 1. a label-free busybox base (as testbed/build-images.sh makes its own), then the images
family=build
if [ -n "${BASE_IMAGE:-}" ]; then
  base=$BASE_IMAGE
else
  [ -x /bin/busybox ] || { fail "/bin/busybox missing (scripts/ensure-docker.sh installs it)"; exit 1; }
  root=$tmp/rootfs
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,etc,root,run,tmp,proc,sys,dev}
  chmod 1777 "$root/tmp"
  cp /bin/busybox "$root/bin/busybox"
  chroot "$root" /bin/busybox --install -s
  echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
  echo 'root:x:0:' >"$root/etc/group"
  tar --numeric-owner -C "$root" -c . |
    docker import -c 'LABEL acestream-orchestrator-dev=engine-verify' -c 'CMD ["/bin/sh"]' - "$base" >/dev/null ||
    { fail "docker import of the base failed"; exit 1; }
  rm -rf "$root"
fi
BASE_IMAGE=$base "$here/build.sh" "$ns" || { fail "build.sh failed"; exit 1; }

# 2. helpers
owner_ip=
start_owner() {
  docker run -d "${labels[@]}" --name "$run-$family-owner" "$base" sleep 100000 >/dev/null || return 1
  owner_ip=$(docker inspect -f '{{.NetworkSettings.IPAddress}}' "$run-$family-owner")
}
engine() { # NAME [docker run args...] IMAGE [command...]: starts one engine in the owner's netns
  local name=$1
  shift
  docker run -d "${labels[@]}" --name "$run-$family-$name" --network "container:$run-$family-owner" "$@" >/dev/null
}
running() { [ "$(docker inspect -f '{{.State.Running}}' "$run-$family-$1" 2>/dev/null)" = true ]; }
exit_code() { docker inspect -f '{{.State.ExitCode}}' "$run-$family-$1" 2>/dev/null; }
logs() { docker logs "$run-$family-$1" 2>&1; }
get() { curl -s --max-time 5 "$@"; }
ready() { # NAME PORT: get_version answers JSON with "result" within 15 s
  local i
  for i in $(seq 150); do
    get "http://$owner_ip:$2/webui/api/service?method=get_version" 2>/dev/null |
      python3 -c 'import json, sys; sys.exit(0 if json.load(sys.stdin).get("result") else 1)' 2>/dev/null && return 0
    running "$1" || return 1
    sleep 0.1
  done
  return 1
}
exits_nonzero() { # NAME: the container stops within 10 s with a non-zero code
  local i
  for i in $(seq 100); do
    if ! running "$1"; then [ "$(exit_code "$1")" != 0 ]; return; fi
    sleep 0.1
  done
  return 1
}
info_is() { # NAME PORT PYTHON-EXPR: /standin/info satisfies the expression
  [ "$(get "http://$owner_ip:$2/standin/info" | py "$3" 2>/dev/null)" = True ]
}

session() { # NAME PORT: a full getstream session
  local port=$2 body playback stat command n first
  body=$(get "http://$owner_ip:$port/ace/getstream?format=json&id=0123456789abcdef0123456789abcdef01234567&pid=$(cat /proc/sys/kernel/random/uuid)")
  playback=$(py 'd["response"]["playback_url"]' <<<"$body" 2>/dev/null)
  stat=$(py 'd["response"]["stat_url"]' <<<"$body" 2>/dev/null)
  command=$(py 'd["response"]["command_url"]' <<<"$body" 2>/dev/null)
  check "getstream JSON (playback/stat/command URLs on this engine, int is_live, session id)" \
    test "$(py '(d["error"] is None and d["response"]["is_live"] == 1 and type(d["response"]["is_encrypted"]) is int and len(d["response"]["playback_session_id"]) == 40 and all(d["response"][k].startswith("http://'"$owner_ip:$port"'/ace/") for k in ("playback_url", "stat_url", "command_url")))' <<<"$body" 2>/dev/null)" = True
  [ -n "$playback" ] || return
  get --max-time 3 "$playback" 2>/dev/null | head -c 8192 >"$tmp/ts"
  n=$(wc -c <"$tmp/ts")
  first=$(head -c 1 "$tmp/ts" | od -An -tx1 | tr -d ' \n')
  check "playback_url streams MPEG-TS ($n bytes read, first byte 0x$first)" test "$n" -ge 4096 -a "$first" = 47
  check "stat_url answers while the session lives" \
    test "$(get "$stat" | py 'd["error"] is None and d["response"]["status"] == "dl"' 2>/dev/null)" = True
  local sid base
  sid=$(py 'd["response"]["playback_session_id"]' <<<"$body" 2>/dev/null)
  base="http://$owner_ip:$port/standin/stall"
  get "$base?on=1&session=$sid" >/dev/null
  check "stall control on: stat_url says no peers, no speed" \
    test "$(get "$stat" | py 'd["response"]["peers"] == 0 and d["response"]["speed_down"] == 0' 2>/dev/null)" = True
  local d1 d2
  d1=$(get "$stat" | py 'd["response"]["downloaded"]' 2>/dev/null); sleep 1.2
  d2=$(get "$stat" | py 'd["response"]["downloaded"]' 2>/dev/null)
  check "stall control on: nothing more downloaded ($d1 -> $d2), the API still answers" \
    test -n "$d1" -a "$d1" = "$d2" -a "$(get "http://$owner_ip:$port/webui/api/service?method=get_version" | py 'bool(d["result"])' 2>/dev/null)" = True
  get "$base?on=0&session=$sid" >/dev/null
  get "$base?on=1" >/dev/null
  check "engine-wide stall control on: this session stalls too" \
    test "$(get "$stat" | py 'd["response"]["peers"]' 2>/dev/null)" = 0
  get "$base?on=0" >/dev/null
  sleep 1.2
  check "stall control off: peers and progress again" \
    test "$(get "$stat" | py 'd["response"]["peers"] > 0 and d["response"]["downloaded"] > '"${d2:-0}" 2>/dev/null)" = True
  check "command_url?method=stop -> ok" \
    test "$(get "$command?method=stop" | py 'd == {"response": "ok", "error": None}' 2>/dev/null)" = True
  check "stat_url after stop -> unknown playback session id" \
    test "$(get "$stat" | py 'd == {"response": None, "error": "unknown playback session id"}' 2>/dev/null)" = True
  check "playback_url after stop -> 500" test "$(get -o /dev/null -w '%{http_code}' "$playback")" = 500
}

stops_promptly() { # NAME
  local t0 t1
  t0=$(date +%s%N)
  docker stop -t 10 "$run-$family-$1" >/dev/null 2>&1
  t1=$(date +%s%N)
  check "SIGTERM: stopped in $(((t1 - t0) / 1000000)) ms, exit code $(exit_code "$1")" \
    test $(((t1 - t0) / 1000000)) -lt 3000 -a "$(exit_code "$1")" = 0
}

clash_pair() { # MAKE-C-ARGS... is called as `$1 C PORT` and `$1 D PORT`
  "$1" C "$2" && "$1" D "$3"
  check "C, no API port given, is ready" ready C "$2"
  check "D, no API port given either, exits non-zero" exits_nonzero D
  check "D says why: $(logs D | grep -m1 'cannot listen' | sed 's/^standin-engine: //')" \
    bash -c "docker logs '$run-$family-D' 2>&1 | grep -q 'cannot listen on TCP port 62062 (api port'"
}

acexy_through() { # PORT: the real acexy proxy streams from this engine
  [ -x "$acexy" ] || { say "SKIP $family: acexy not found at $acexy"; return 0; }
  cp "$acexy" "$tmp/acexy" && chmod +x "$tmp/acexy"
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  ACEXY_ADDR=127.0.0.1:$port ACEXY_HOST=$owner_ip ACEXY_PORT=$1 "$tmp/acexy" >"$tmp/acexy.log" 2>&1 &
  acexy_pid=$!
  local i
  for i in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/ace/status" && break; sleep 0.1; done
  get --max-time 4 "http://127.0.0.1:$port/ace/getstream?id=89abcdef0123456789abcdef0123456789abcdef" 2>/dev/null |
    head -c 16384 >"$tmp/acexy.ts"
  check "the real acexy proxy streams from the engine ($(wc -c <"$tmp/acexy.ts") bytes)" \
    test "$(wc -c <"$tmp/acexy.ts")" -ge 16384
  kill "$acexy_pid" 2>/dev/null
  wait "$acexy_pid" 2>/dev/null
  acexy_pid=
}

# 3. the families
# acestream-http-proxy: env covers HTTP/HTTPS/P2P/bind-all/cache limit; the API port needs the
# entrypoint overridden (catatonit -- /app/start-engine FLAGS)
family=acestream-http-proxy
img=$ns/engine:latest
hp_flags() { # BASEPORT
  echo --client-console --http-port=$1 --https-port=$(($1 + 1)) --api-port=$(($1 + 2)) --port=$(($1 + 3)) --bind-all --cache-limit=3
}
start_owner || fail "owner"
# shellcheck disable=SC2046
engine A --entrypoint /usr/bin/catatonit "$img" -- /app/start-engine $(hp_flags 7100)
# shellcheck disable=SC2046
engine B --entrypoint /usr/bin/catatonit "$img" -- /app/start-engine $(hp_flags 7110)
check "A ready (entrypoint override, all four ports)" ready A 7100
check "B ready (distinct ports, same namespace)" ready B 7110
check "A /standin/info: ports, cache limit, bind-all" info_is A 7100 \
  'd["ports"] == {"http": 7100, "https": 7101, "api": 7102, "p2p": 7103} and d["cache_limit"] == 3 and d["bind_all"] is True and d["flags"] == "'"$(hp_flags 7100)"'".split()'
session A 7100
acexy_through 7110
stops_promptly A
hp_env() { # NAME BASEPORT: env only (what the daemon sends today, plus CACHE_LIMIT), CONF ignored
  engine "$1" -e HTTP_PORT="$2" -e HTTPS_PORT=$(($2 + 1)) -e P2P_PORT=$(($2 + 3)) -e BIND_ALL=true \
    -e CACHE_LIMIT=2 -e CONF="--api-port=$(($2 + 2))" "$img" /app/start-engine --api-port=$(($2 + 2))
}
clash_pair hp_env 7120 7130
check "C (env only): flags from env, CONF and the command ignored, API 62062" info_is C 7120 \
  'd["flags"] == ["--client-console", "--http-port=7120", "--https-port=7121", "--bind-all", "--port=7123", "--cache-limit=2"] and d["ports"]["api"] == 62062 and d["argv"] == ["--client-console", "@/app/acestream.conf"]'
docker rm -f "$run-$family-owner" "$run-$family-A" "$run-$family-B" "$run-$family-C" "$run-$family-D" >/dev/null 2>&1

# jopsis x64: one ACESTREAM_ARGS string
family=jopsis
img=$ns/engine-jopsis:latest
j_args() { echo "--client-console --bind-all --http-port $1 --https-port $(($1 + 1)) --api-port $(($1 + 2)) --port $(($1 + 3)) --cache-limit 3"; }
start_owner || fail "owner"
engine A -e ACESTREAM_ARGS="$(j_args 7200)" "$img"
engine B -e ACESTREAM_ARGS="$(j_args 7210)" "$img"
check "A ready (ACESTREAM_ARGS)" ready A 7200
check "B ready (distinct ports, same namespace)" ready B 7210
check "A /standin/info: ports, cache limit, bind-all, flags = ACESTREAM_ARGS split" info_is A 7200 \
  'd["ports"] == {"http": 7200, "https": 7201, "api": 7202, "p2p": 7203} and d["cache_limit"] == 3 and d["bind_all"] is True and d["flags"] == "'"$(j_args 7200)"'".split()'
session A 7200
stops_promptly A
j_env() { engine "$1" -e ACESTREAM_ARGS="--client-console --bind-all --http-port $2 --port $(($2 + 3))" "$img"; }
clash_pair j_env 7220 7230
docker rm -f "$run-$family-owner" "$run-$family-A" "$run-$family-B" "$run-$family-C" "$run-$family-D" >/dev/null 2>&1

# jopsis ARM and AceServe: the command line
for family in jopsis-arm aceserve; do
  img=$ns/engine-$family:latest
  case $family in
    jopsis-arm) defaults="--bind-all --client-console --live-cache-type memory --live-mem-cache-size 104857600 --disable-sentry --log-stdout --disable-upnp"; p=7300 ;;
    aceserve) defaults="--bind-all --live-cache-type memory --live-mem-cache-size 104857600 --disable-sentry --log-stdout --disable-upnp"; p=7400 ;;
  esac
  c_args() { echo "$defaults --http-port $1 --https-port $(($1 + 1)) --api-port $(($1 + 2)) --port $(($1 + 3)) --cache-limit 3"; }
  start_owner || fail "owner"
  # shellcheck disable=SC2046
  engine A "$img" python main.py $(c_args $p)
  # shellcheck disable=SC2046
  engine B "$img" python main.py $(c_args $((p + 10)))
  check "A ready (python main.py FLAGS)" ready A $p
  check "B ready (distinct ports, same namespace)" ready B $((p + 10))
  check "A /standin/info: ports, cache limit, bind-all, flags = the command's" info_is A $p \
    'd["ports"] == {"http": '$p', "https": '$((p + 1))', "api": '$((p + 2))', "p2p": '$((p + 3))'} and d["cache_limit"] == 3 and d["bind_all"] is True and d["flags"] == "'"$(c_args $p)"'".split() and d["binary"] == "python main.py"'
  session A $p
  stops_promptly A
  # shellcheck disable=SC2086
  c_cmd() { engine "$1" "$img" python main.py $defaults --http-port "$2" --port $(($2 + 3)); }
  clash_pair c_cmd $((p + 20)) $((p + 30))
  docker rm -f "$run-$family-owner" "$run-$family-A" "$run-$family-B" "$run-$family-C" "$run-$family-D" >/dev/null 2>&1
done

family=all
if [ "$failures" -eq 0 ]; then say "all checks passed"; else say "$failures check(s) failed"; exit 1; fi
