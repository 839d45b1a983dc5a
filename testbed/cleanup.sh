#!/usr/bin/env bash
# Force-remove leftover test objects: every container carrying the label (with its anonymous
# volumes), then labelled networks and volumes.
#   testbed/cleanup.sh              label acestream-orchestrator-test=1 (stand-in images
#                                   carry it too, so it also matches containers created from
#                                   them by the code under test)
#   testbed/cleanup.sh KEY=VALUE    another label filter (KEY alone matches any value)
set -euo pipefail
filter=label=${1:-acestream-orchestrator-test=1}

remove() { # KIND LIST-COMMAND... : remove what the listing returns, fail if any survive
  local kind=$1 ids
  shift
  ids=$("$@" --filter "$filter")
  [ -n "$ids" ] || return 0
  # shellcheck disable=SC2086 # one id per word
  case $kind in
    container) docker rm -f -v $ids ;;
    *) docker "$kind" rm $ids ;;
  esac >/dev/null 2>&1 || true # "already gone"/"removal in progress" races are fine
  if [ -n "$("$@" --filter "$filter")" ]; then
    echo "cleanup: ERROR: some ${kind}s with $filter survived:" >&2
    "$@" --filter "$filter" >&2
    return 1
  fi
  echo "cleanup: removed $(wc -w <<<"$ids") ${kind}(s) with $filter"
}

remove container docker ps -aq
remove network docker network ls -q
remove volume docker volume ls -q
