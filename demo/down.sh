#!/usr/bin/env bash
# `make demo-down`: remove every container, network, volume and image the demo made.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
compose down --volumes --remove-orphans --timeout 5
docker ps -aq --filter label=io.nodeagent.demo=true | xargs -r docker rm -f >/dev/null
for image in nodeagent-demo/node:latest nodeagent-demo/busybox:1 nodeagent-demo/debian:bookworm; do
    docker image rm -f "$image" >/dev/null 2>&1 && echo "removed $image"
done
docker image prune -f --filter label=io.nodeagent.demo=true >/dev/null
rm -rf "$DEMO_DIR/.build"
echo "demo removed"
