#!/usr/bin/env bash
# Make sure a Docker daemon answers, installing and starting one if needed.
#
#   scripts/ensure-docker.sh [start]  nothing to do if `docker info` answers; else install
#                                     docker.io/busybox-static if missing and start dockerd
#   scripts/ensure-docker.sh restart  stop the dockerd started here (or the one in
#                                     /var/run/docker.pid) and start it again
#   scripts/ensure-docker.sh stop     stop it (tests of a Docker outage), `start` brings it back
#
# dockerd runs detached (setsid nohup), logs to $LOG, its pid is in $PIDFILE.
# Env: ENSURE_DOCKER_TIMEOUT_S (default 60) bounds the wait for `docker info`;
#      DOCKERD_EXTRA_ARGS adds dockerd flags (e.g. --live-restore).
set -euo pipefail

LOG=/var/log/acestream-orchestrator-dockerd.log
PIDFILE=/var/run/acestream-orchestrator-dockerd.pid
LOCK=/var/run/acestream-orchestrator-dockerd.lock
WAIT_S=${ENSURE_DOCKER_TIMEOUT_S:-60}
STOP_S=30 # dockerd stops running containers on SIGTERM before exiting

say() { echo "ensure-docker: $*"; }
die() { echo "ensure-docker: ERROR: $*" >&2; exit 1; }

docker_ok() { command -v docker >/dev/null && timeout 10 docker info >/dev/null 2>&1; }

# is_proc PID NAME: PID is alive, not a zombie, and named NAME (guards against pid reuse)
is_proc() {
  [[ $1 =~ ^[0-9]+$ ]] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ] &&
    ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat" 2>/dev/null
}

# Stale pid files (left by a killed session) make dockerd/containerd refuse to start
# or wait for a process that is gone: drop them unless their process is still alive.
clear_stale_pid() {
  local f=$1 name=$2
  [ -f "$f" ] || return 0
  is_proc "$(cat "$f" 2>/dev/null || true)" "$name" || rm -f "$f"
}

install_missing() {
  local pkgs=() tmp_policy=
  # docker.io brings dockerd, the docker CLI, containerd, runc; busybox-static is what
  # testbed/build-images.sh packs into the stand-in images
  { command -v dockerd && command -v docker; } >/dev/null || pkgs+=(docker.io)
  if ! { [ -x /bin/busybox ] && dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed'; }; then
    pkgs+=(busybox-static)
  fi
  [ ${#pkgs[@]} -gt 0 ] || return 0
  # keep the package's init script from starting a dockerd of its own
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && tmp_policy=1
  fi
  local log rc=0
  log=$(mktemp)
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}"; } >"$log" 2>&1 || rc=$?
  [ -z "$tmp_policy" ] || rm -f /usr/sbin/policy-rc.d
  if [ $rc != 0 ]; then tail -n 30 "$log" >&2; rm -f "$log"; die "apt-get install ${pkgs[*]} failed"; fi
  rm -f "$log"
  command -v dockerd >/dev/null || die "dockerd still missing after installing ${pkgs[*]}"
}

wait_docker() { # PID: wait for `docker info` while PID lives, bounded by WAIT_S; 2 = PID died
  local pid=$1 end=$((SECONDS + WAIT_S))
  while [ $SECONDS -lt $end ]; do
    docker_ok && return 0
    kill -0 "$pid" 2>/dev/null || return 2
    sleep 0.2
  done
  return 1
}

start_dockerd() {
  install_missing
  # bare machines may lack cgroup mounts; cgroupfs-mount comes with docker.io
  grep -q cgroup /proc/mounts || ! command -v cgroupfs-mount >/dev/null || cgroupfs-mount
  clear_stale_pid /var/run/docker.pid dockerd
  clear_stale_pid /var/run/docker/containerd/containerd.pid containerd
  local t0=$EPOCHREALTIME pid why
  echo "=== $(date -u +%FT%TZ) ensure-docker: starting dockerd ${DOCKERD_EXTRA_ARGS:-}" >>"$LOG"
  # 9>&- : dockerd must not inherit the lock. A non-interactive shell runs background
  # jobs in its own process group, so setsid does not fork and $! is dockerd itself.
  # shellcheck disable=SC2086 # DOCKERD_EXTRA_ARGS is a list of flags
  setsid nohup dockerd ${DOCKERD_EXTRA_ARGS:-} >>"$LOG" 2>&1 </dev/null 9>&- &
  pid=$!
  echo "$pid" >"$PIDFILE"
  local rc=0
  wait_docker "$pid" || rc=$?
  if [ $rc != 0 ]; then
    if [ $rc = 2 ]; then why="exited"; else why="did not answer within ${WAIT_S}s"; fi
    echo "ensure-docker: ERROR: dockerd (pid $pid) $why; end of $LOG:" >&2
    # the log from our start marker on
    awk '/^=== /{n=0} {buf[n++]=$0} END{for(i=(n>30?n-30:0);i<n;i++) print buf[i]}' "$LOG" >&2
    exit 1
  fi
  say "dockerd started (pid $pid, $(awk "BEGIN{printf \"%.1f\", $EPOCHREALTIME - $t0}")s, log $LOG)"
}

running_dockerd() { # prints the pid of a live dockerd: ours first, else the default one
  local f pid
  for f in "$PIDFILE" /var/run/docker.pid; do
    pid=$(cat "$f" 2>/dev/null || true)
    if is_proc "$pid" dockerd; then echo "$pid"; return 0; fi
  done
  return 1
}

stop_dockerd() {
  local pid
  pid=$(running_dockerd) || { rm -f "$PIDFILE"; return 0; }
  kill -TERM "$pid"
  local end=$((SECONDS + STOP_S))
  while is_proc "$pid" dockerd && [ $SECONDS -lt $end ]; do sleep 0.1; done
  if is_proc "$pid" dockerd; then
    echo "ensure-docker: dockerd $pid still running after ${STOP_S}s, sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    while is_proc "$pid" dockerd; do sleep 0.1; done
  fi
  rm -f "$PIDFILE"
}

mode=${1:-start}
case $mode in start|restart|stop) ;; *) die "usage: $0 [start|restart|stop]" ;; esac
[ "$(id -u)" = 0 ] || die "must run as root"
# one at a time (tests may call restart while another run starts dockerd)
exec 9>"$LOCK"
flock -w $((WAIT_S + STOP_S + 60)) 9 || die "another ensure-docker holds $LOCK"

case $mode in
  start)
    if docker_ok; then say "docker already answers"; exit 0; fi
    # a live dockerd may still be starting: give it the usual bound, then replace it
    if pid=$(running_dockerd); then
      if wait_docker "$pid"; then say "docker answers (dockerd pid $pid)"; exit 0; fi
      echo "ensure-docker: dockerd $pid alive but not answering, restarting it" >&2
      stop_dockerd
    fi
    start_dockerd ;;
  restart) stop_dockerd; start_dockerd ;;
  stop) stop_dockerd; say "dockerd stopped" ;;
esac
