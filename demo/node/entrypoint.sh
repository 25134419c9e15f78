#!/bin/bash
# Demo node entrypoint. `agent`: start this node's own dockerd, then `nodeagent run`.
# `serve ARGS...`: the fleet source (`nodeagent serve`), no engine needed.
set -euo pipefail
if [ "${1:-agent}" = serve ]; then
    shift
    exec nodeagent --log-format json serve "$@"
fi
mkdir -p /var/lib/docker /var/log/pods
# fuse-overlayfs or vfs are not needed: /var/lib/docker is a tmpfs, where overlay2 works
dockerd --host unix:///var/run/docker.sock --storage-driver overlay2 >/var/log/dockerd.log 2>&1 &
for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
done
docker info >/dev/null 2>&1 || { echo "dockerd did not start:"; tail -n 40 /var/log/dockerd.log; exit 1; }
exec nodeagent --config /etc/nodeagent/config.yaml --log-format json run
