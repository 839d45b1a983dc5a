#!/bin/bash
# The image's HEALTHCHECK: GET /health on the address the running daemon listens on, which the
# daemon writes to $ORCHESTRATOR_API_FILE once it listens (orchestrator/api/address_file.py).
# bash's /dev/tcp: no interpreter to start, a few milliseconds of CPU a run. Exit 0 when the
# daemon answers 200, 1 otherwise (Docker's convention; Docker's --timeout bounds a hung connect).
host=127.0.0.1
port=8000
if [ -r "${ORCHESTRATOR_API_FILE:-}" ]; then
  read -r host port <"$ORCHESTRATOR_API_FILE"
fi
if ! exec 3<>"/dev/tcp/$host/$port"; then
  echo "healthcheck: $host:$port: no answer" >&2
  exit 1
fi
printf 'GET /health HTTP/1.0\r\nHost: %s\r\n\r\n' "$host" >&3
IFS= read -r -t 3 status <&3
case $status in
  "HTTP/1."?" 200 "*) echo "healthcheck: $host:$port: ok"; exit 0 ;;
esac
echo "healthcheck: $host:$port: ${status:-no answer}" >&2
exit 1
