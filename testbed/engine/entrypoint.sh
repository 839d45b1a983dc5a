#!/bin/sh
# Engine stand-in. Env as the real image: HTTP_PORT (default 6878), HTTPS_PORT, P2P_PORT,
# CONF. STANDIN_READY_DELAY_S (default 0): the engine API routes answer 404 until then;
# /standin/info answers at once.
set -e
port=${HTTP_PORT:-6878}
export STANDIN_DOCROOT=/run/standin/www
# rebuilt on every start, so a `docker restart` is a fresh engine
rm -rf /run/standin && mkdir -p "$STANDIN_DOCROOT/standin" /run/standin/api
cp -a /standin/www/. /run/standin/api/

# container id: cgroup v1 path, else the shm mount (own dir even in container: network mode)
cid=$(sed -n 's#.*/docker/\([0-9a-f]\{64\}\).*#\1#p' /proc/self/cgroup | head -n 1)
[ -n "$cid" ] || cid=$(sed -n 's#.*/containers/\([0-9a-f]\{64\}\)/mounts/shm .*#\1#p' /proc/self/mountinfo | head -n 1)

# /standin/info: what this container got (null = unset); HOSTNAME is the netns owner's
# under network_mode container:<id>, CONTAINER_ID tells engines apart
awk -v cid="$cid" -v port="$port" -v started="$(date +%s)" -v boot="$(cat /proc/sys/kernel/random/uuid)" '
  function j(k) {
    if (!(k in ENVIRON)) return "null"
    s = ENVIRON[k]
    gsub(/\\/, "\\\\", s); gsub(/"/, "\\\"", s); gsub(/\n/, "\\n", s); gsub(/\r/, "\\r", s); gsub(/\t/, "\\t", s)
    return "\"" s "\""
  }
  BEGIN {
    printf "{\"HTTP_PORT\": %s, \"HTTPS_PORT\": %s, \"P2P_PORT\": %s, \"CONF\": %s, \"HOSTNAME\": %s,",
      j("HTTP_PORT"), j("HTTPS_PORT"), j("P2P_PORT"), j("CONF"), j("HOSTNAME")
    printf " \"CONTAINER_ID\": \"%s\", \"listen_port\": %d, \"started_at\": %d, \"start_id\": \"%s\"}\n",
      cid, port, started, boot
  }' >"$STANDIN_DOCROOT/standin/info"

ready() { for d in /run/standin/api/*; do mv "$d" "$STANDIN_DOCROOT/"; done; }
delay=${STANDIN_READY_DELAY_S:-0}
if [ "$delay" = 0 ]; then ready; else (sleep "$delay" && ready) & fi

exec /usr/local/bin/standin-run "$port"
