#!/usr/bin/env bash
# `make demo`: build, start, wait until the fleet has converged, then show it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
"$DEMO_DIR/build.sh"
say "starting the fleet source and three nodes (project $COMPOSE_PROJECT_NAME, port $DEMO_PORT)"
compose up -d --force-recreate
say "waiting for the fleet to converge"
wait_until 240 "3 nodes ready; log-shipper on 3, gpu-agent on 1, node-monitor on 2" "$CONVERGED"
say "the fleet (nodeagent status --server $FLEET)"
"$NODEAGENT" status --server "$FLEET"
for n in node-a node-b node-c; do
    say "$n: nodeagent status"
    node_pods "$n"
done
echo
echo "Fleet page: $FLEET/   Tour: make demo-tour   Stop and remove everything: make demo-down"
