#!/bin/sh
# shellcheck shell=busybox
# Stand-in for /entrypoint.sh of ghcr.io/krinkuto11/acestream-http-proxy (bash there, same
# logic here): every variable below that is set AND non-empty adds one line to
# /app/acestream.conf (the value itself is not interpreted: BIND_ALL=false still binds all);
# the file is written with printf %b (backslash escapes expanded) and the engine started as
#   /app/start-engine --client-console @/app/acestream.conf
# Nothing else is read: not CONF, not ALLOW_REMOTE_ACCESS or EXTRA_FLAGS (set by the image's
# Dockerfile, left over from upstream), not the container's command (given as "$@" here and
# dropped, exactly like the real script does). There is no variable for --api-port.
conf=/app/acestream.conf
lines=
[ -z "${INTERNAL_BUFFERING}" ] || lines="${lines}--use-internal-buffering=${INTERNAL_BUFFERING}\n"
[ -z "${HTTP_PORT}" ] || lines="${lines}--http-port=${HTTP_PORT}\n"
[ -z "${HTTPS_PORT}" ] || lines="${lines}--https-port=${HTTPS_PORT}\n"
[ -z "${BIND_ALL}" ] || lines="${lines}--bind-all\n"
[ -z "${P2P_PORT}" ] || lines="${lines}--port=${P2P_PORT}\n"
[ -z "${CACHE_LIMIT}" ] || lines="${lines}--cache-limit=${CACHE_LIMIT}\n"
printf "%b" "$lines" >"$conf"
exec /app/start-engine --client-console "@$conf"
