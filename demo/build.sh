#!/usr/bin/env bash
# Build everything the demo needs, offline: a Debian base (debootstrap) when none is present, nodeagent
# wheels from this checkout, the node image, and the workload image saved into the images directory.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$DEMO_DIR"
"$REPO_DIR/scripts/debian-base.sh" nodeagent-demo/debian:bookworm \
    docker.io,python3,python3-venv,iproute2,procps,ca-certificates,curl
rm -rf .build && mkdir -p .build/wheels .build/images
say "wheels from the checkout"
"$REPO_DIR/.venv/bin/pip" wheel --quiet "$REPO_DIR" -w .build/wheels
cp node/Dockerfile node/entrypoint.sh .build/
say "node image"
docker build --quiet --label io.nodeagent.demo=true -t nodeagent-demo/node:latest .build >/dev/null
echo "nodeagent-demo/node:latest"
say "workload image (FROM scratch, static busybox), handed to the nodes through their imagesDir"
"$REPO_DIR/.venv/bin/python" - <<'PY'
from nodeagent.agent import localimage
from nodeagent.runtime import docker
rt = docker.DockerRuntime()
if not rt.image_present("nodeagent-demo/busybox:1"):
    rt.build_busybox_image("nodeagent-demo/busybox:1", {"io.nodeagent.demo": "true"})
print("nodeagent-demo/busybox:1")
PY
docker save nodeagent-demo/busybox:1 -o .build/images/workloads.tar
