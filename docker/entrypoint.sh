#!/bin/sh
# Entrypoint of the acestream-orchestrator image.
#
#   docker run IMAGE                  the daemon with the default CMD (--config /config/orchestrator.yaml)
#   docker run IMAGE --flags...       the daemon with these flags (e.g. --config X --check)
#   docker run IMAGE some-command...  that command, as given
#
# Started as root, it drops to the unprivileged user `orchestrator` (uid/gid 10001) whenever the
# Docker socket allows it: with the socket's group as the only supplementary group when the
# socket is group read-writable (the usual root:docker 660), with no extra group when Docker is
# reached over TCP (DOCKER_HOST=tcp://...). It stays root, and says why on stderr, only when the
# socket is owner-only or the configuration file is unreadable to uid 10001. Started as another
# user (`user:` in compose), it changes nothing. `exec` all the way: the daemon is PID 1, so
# `docker stop`'s SIGTERM reaches it directly and it exits within a couple of seconds.
set -eu
RUN_UID=10001

[ $# -gt 0 ] || set -- --config /config/orchestrator.yaml
case $1 in -*) set -- acestream-orchestrator "$@" ;; esac
[ "$(id -u)" = 0 ] || exec "$@"

stay_root() {
  echo "entrypoint: $1; running as root" >&2
  shift
  exec "$@"
}

# the Docker socket the daemon will use (aiodocker reads DOCKER_HOST, as the docker CLI does)
sock=
docker_host=${DOCKER_HOST:-unix:///var/run/docker.sock}
case $docker_host in unix://*) sock=${docker_host#unix://} ;; esac

groups=--clear-groups
if [ -n "$sock" ] && [ -S "$sock" ]; then
  mode=$(stat -c %a "$sock")
  case $mode in
    *[67]?) groups=--groups=$(stat -c %g "$sock") ;;  # group digit rw- or rwx
    *) [ "$(stat -c %u "$sock")" = "$RUN_UID" ] ||
         stay_root "$sock (mode $mode) is not group read-writable" "$@" ;;
  esac
fi
priv="--reuid=$RUN_UID --regid=$RUN_UID $groups --inh-caps=-all --bounding-set=-all --no-new-privs"

# The daemon's configuration file must be readable by uid 10001. The check runs through setpriv
# with the same options, so it also proves setpriv works here (not, e.g., under `cap_drop: [ALL]`).
config=/
if [ "$1" = acestream-orchestrator ]; then
  prev=
  for arg in "$@"; do
    case $prev in --config) config=$arg ;; esac
    case $arg in --config=*) config=${arg#--config=} ;; esac
    prev=$arg
  done
fi
# (a missing file is left to the daemon, which names it in a one-line error)
# shellcheck disable=SC2086 # $priv is a list of options without spaces in them
[ ! -e "$config" ] || setpriv $priv -- test -r "$config" 2>/dev/null ||
  stay_root "$config is not readable by uid $RUN_UID (or setpriv cannot switch users here)" "$@"

# shellcheck disable=SC2086
exec setpriv $priv -- "$@"
