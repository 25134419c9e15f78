#!/usr/bin/env bash
# `make demo-tour`: every promise of a DaemonSet, shown on the three demo nodes, one step at a time.
# Each step changes one thing, says what Kubernetes would do, and waits until the fleet shows it.
# Every change is undone at the end, even on failure. TOUR_PAUSE=0 runs it without pauses (the e2e test).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
PAUSE=${TOUR_PAUSE:-2}
NODE_C=$DEMO_DIR/nodes/node-c/config.yaml
SHIPPER=$DEMO_DIR/manifests/log-shipper.yaml
MONITOR=$DEMO_DIR/manifests/node-monitor.yaml
backup=$(mktemp -d)
cp "$NODE_C" "$SHIPPER" "$MONITOR" "$backup/"

restore() {
    cp "$backup/config.yaml" "$NODE_C"
    cp "$backup/log-shipper.yaml" "$SHIPPER"
    cp "$backup/node-monitor.yaml" "$MONITOR"
    compose start node-b >/dev/null 2>&1 || true
    rm -rf "$backup"
}
trap restore EXIT

pause() { [ "$PAUSE" = 0 ] || sleep "$PAUSE"; }
edit() {  # edit FILE PYTHON-STATEMENTS-ON-text: rewrite a file in place (same inode: bind mounts see it)
    python3 - "$1" "$2" <<'PY'
import sys
path, code = sys.argv[1], sys.argv[2]
text = open(path).read()
scope = {"text": text}
exec(code, scope)
with open(path, "r+") as fh:
    fh.seek(0); fh.write(scope["text"]); fh.truncate()
PY
}

wait_until 120 "the fleet is converged" "$CONVERGED"

say "1. Label a node: node-c gets hardware=gpu, so gpu-agent (nodeSelector hardware=gpu) starts there"
edit "$NODE_C" 'text = text.replace("    disktype: ssd\n", "    disktype: ssd\n    hardware: gpu\n")'
wait_until 90 "gpu-agent runs on 2 nodes" 'ds("gpu-agent")["numberReady"] == 2 and ds("gpu-agent")["desiredNumberScheduled"] == 2'
pause
say "   ... and remove the label: the pod goes away again"
edit "$NODE_C" 'text = text.replace("    hardware: gpu\n", "")'
wait_until 90 "gpu-agent runs on 1 node" 'ds("gpu-agent")["numberReady"] == 1 and ds("gpu-agent")["desiredNumberScheduled"] == 1'
pause

say "2. Taint node-c maintenance=now:NoExecute: pods that do not tolerate it are evicted"
edit "$NODE_C" 'text = text.replace("sources:", "  taints:\n    - {key: maintenance, value: now, effect: NoExecute}\nsources:", 1)'
wait_until 90 "log-shipper and node-monitor evicted from node-c" 'ds("log-shipper")["numberReady"] == 2 and ds("node-monitor")["numberReady"] == 1'
pause
say "   ... and untaint it: they come back"
edit "$NODE_C" 'text = text.replace("  taints:\n    - {key: maintenance, value: now, effect: NoExecute}\n", "")'
wait_until 90 "log-shipper on 3 nodes, node-monitor on 2" "$CONVERGED"
pause

say "3. Update a DaemonSet (log-shipper v1 -> v2): every node replaces its pod with the new revision"
shipper_pods() {
    for n in node-a node-b node-c; do
        compose exec -T "$n" docker ps --filter label=io.kubernetes.pod.namespace=logging \
            --format "$n {{.Label \"io.kubernetes.pod.name\"}}"
    done
}
before=$(shipper_pods)
echo "$before" | sed 's/^/   before: /'
edit "$SHIPPER" 'text = text.replace("(v1)", "(v2)")'
deadline=$((SECONDS + 120))
while :; do
    after=$(shipper_pods)
    if [ "$(echo "$after" | wc -l)" = 3 ] && [ -z "$(comm -12 <(echo "$before" | sort) <(echo "$after" | sort))" ]; then
        break
    fi
    [ $SECONDS -lt $deadline ] || { echo "   TIMEOUT: log-shipper not replaced everywhere" >&2; echo "$after" >&2; exit 1; }
    sleep 1
done
echo "$after" | sed 's/^/   after:  /'
wait_until 60 "log-shipper v2 ready and up to date on all 3 nodes" \
    'ds("log-shipper")["updatedNumberScheduled"] == 3 and ds("log-shipper")["numberReady"] == 3'
pause

say "4. Stop node-b: after the grace period the fleet shows it NotReady"
compose stop -t 2 node-b >/dev/null
wait_until 90 "node-b is not ready" 'not node("node-b")["ready"]'
"$NODEAGENT" status --server "$FLEET" | sed -n '/NAME *STATUS/,$p' || true
say "   ... and start it again: it reports in and starts its pods again"
compose start node-b >/dev/null
wait_until 180 "node-b ready and the fleet converged" "$CONVERGED"
pause

say "5. Delete a DaemonSet (node-monitor): its pods are removed on every node"
rm -f "$MONITOR"
wait_until 90 "node-monitor gone from the fleet" 'ds("node-monitor") is None or ds("node-monitor")["currentNumberScheduled"] == 0'
for n in node-a node-b node-c; do
    if compose exec -T "$n" sh -c 'docker ps --format "{{.Names}}"' | grep -q monitor; then
        echo "   node-monitor still runs on $n" >&2
        exit 1
    fi
done
echo "   ok: no node-monitor container on any node"

say "Tour complete; restoring the demo's files (node-monitor comes back)"
