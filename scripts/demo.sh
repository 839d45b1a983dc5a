#!/usr/bin/env bash
# `make demo [MODE=none|single|redundant]`: the daemon in the foreground on the local Docker
# engine, with stand-in engines (and Gluetun stand-ins for the VPN modes). No VPN account needed.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-none}
port=${DEMO_PORT:-8000}
mkdir -p .demo
label=acestream-orchestrator-demo
# the stand-in images carry acestream-orchestrator-test=1, which every container made from them
# inherits and the test suites' clean-up takes for a leftover of theirs; =dev marks the demo's
# containers as a tool's, never touched by it (testkit/harness.py remove_test_containers)
tools=acestream-orchestrator-test=dev

gluetuns=()
case $mode in
  none) ;;
  single) gluetuns=(demo-gluetun-1) ;;
  redundant) gluetuns=(demo-gluetun-1 demo-gluetun-2) ;;
  *) echo "demo: MODE must be none, single or redundant (got '$mode')" >&2; exit 2 ;;
esac

fwd=40001
for g in "${gluetuns[@]}"; do
  if [ -z "$(docker ps -q --filter "name=^${g}$")" ]; then
    docker rm -f "$g" >/dev/null 2>&1 || true
    docker run -d --name "$g" --label "$label=1" --label "$tools" -e STANDIN_FORWARDED_PORT=$fwd \
      acestream-orchestrator-test/gluetun:latest >/dev/null
    echo "demo: started Gluetun stand-in $g (forwarded port $fwd)"
  fi
  fwd=$((fwd + 1))
done

containers=
# (printf with no arguments would still print its format once: [""] for MODE=none)
[ "${#gluetuns[@]}" -eq 0 ] || containers=$(printf '"%s", ' "${gluetuns[@]}")
cat > .demo/config.yaml <<YAML
# Written by scripts/demo.sh; edit it while the demo runs and watch the daemon follow.
engines:
  image: acestream-orchestrator-test/engine:latest
  launch: {preset: acestream-http-proxy}   # the stand-in starts like the default image
  pool: demo              # its own pool: a stack on this host (pool default) keeps its engines
  min_replicas: 4
  min_free: 1
  max_replicas: 10
  address: ip             # the daemon runs on the Docker host: reach containers by bridge IP
  labels: {$label: "1", ${tools%%=*}: ${tools#*=}}
vpn:
  mode: $mode
  containers: [${containers%, }]
  unhealthy_restart_timeout_s: 60
  tunnel_probe: {target: ""}   # the stand-ins have no tunnel to probe
api:
  port: $port
log_level: INFO
YAML

cat <<MSG
demo: daemon on http://localhost:$port  (Ctrl-C stops it; engines keep running; 'make clean' removes them)
demo: try   curl -s localhost:$port/engines | python3 -m json.tool
demo: edit  .demo/config.yaml (e.g. min_replicas) and watch the pool follow
MSG
[ "$mode" = none ] || echo "demo: fail a VPN with   docker exec demo-gluetun-1 standin-health off   (and 'on' again)"
exec .venv/bin/acestream-orchestrator --config .demo/config.yaml
