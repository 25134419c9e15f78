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

rollout() { curl -fsS "$FLEET/api/rollouts/logging/log-shipper"; }
update_revision() { rollout | python3 -c 'import json,sys; print(json.load(sys.stdin)["updateRevision"])'; }
wait_new_revision() {  # wait_new_revision OLD: until serve has read the edited file (a new update revision)
    local deadline=$((SECONDS + 60))
    until [ "$(update_revision 2>/dev/null || echo "$1")" != "$1" ]; do
        [ $SECONDS -lt $deadline ] || { echo "   TIMEOUT: serve did not take the new revision" >&2; exit 1; }
        sleep 0.5
    done
}

say "3. Roll out a change (log-shipper v1 -> v2, maxUnavailable 1): serve hands it to one node at a time"
echo "   (Kubernetes' DaemonSet controller does the same: the next node only after the new pod is available)"
# every pod available first (ready for minReadySeconds): like Kubernetes, serve replaces a pod that is
# not available at once, outside the budget (node-c's came back in step 2 only seconds ago)
wait_until 60 "log-shipper available on all 3 nodes" 'ds("log-shipper")["numberAvailable"] == 3'
rev=$(update_revision)
edit "$SHIPPER" 'text = text.replace("(v1)", "(v2)")'
wait_new_revision "$rev"
rollout_watch() {  # rollout_watch SECONDS: the nodes in each wave, and the most nodes in one wave at once
    python3 - "$FLEET/api/rollouts/logging/log-shipper" "$1" <<'PY'
import json, sys, time, urllib.request
url, seconds = sys.argv[1], float(sys.argv[2])
order, widest, end = [], 0, time.monotonic() + seconds
while time.monotonic() < end:
    try:
        doc = json.load(urllib.request.urlopen(url, timeout=5))
    except OSError:
        time.sleep(0.5)
        continue
    widest = max(widest, len(doc["wave"]))
    order += [n for n in doc["wave"] if n not in order]
    if doc["phase"] != "Progressing" and order:
        break
    time.sleep(0.3)
print(f"   waves: {' -> '.join(order) or '-'} (at most {widest} node at once)")
sys.exit(0 if widest == 1 and len(order) == 3 else 1)
PY
}
rollout_watch 180 > "$backup/waves" &
watcher=$!
"$NODEAGENT" rollout status logging/log-shipper --server "$FLEET" --timeout 180 | sed 's/^/   /'
wait "$watcher" || { cat "$backup/waves"; echo "   TIMEOUT: the rollout did not go node by node" >&2; exit 1; }
cat "$backup/waves"
wait_until 60 "log-shipper v2 ready and up to date on all 3 nodes" \
    'ds("log-shipper")["updatedNumberScheduled"] == 3 and ds("log-shipper")["numberReady"] == 3'
pause

say "4. A bad revision (v3 exits at once): the rollout stops after the first node, the other two keep v2"
rev=$(update_revision)
edit "$SHIPPER" 'text = text.replace("(v2)", "(v3)").replace("\"while true;", "\"exit 1; while true;")'
wait_new_revision "$rev"
bad_nodes() {  # the nodes serve has handed the update revision
    rollout | python3 -c 'import json,sys; d=json.load(sys.stdin); print(" ".join(n["name"] for n in d["nodes"] if n["revision"] == d["updateRevision"]))'
}
deadline=$((SECONDS + 90))
until [ -n "$(bad_nodes 2>/dev/null)" ]; do
    [ $SECONDS -lt $deadline ] || { echo "   TIMEOUT: v3 was never handed out" >&2; exit 1; }
    sleep 1
done
sleep 15  # five minReadySeconds: time enough for a rollout that would not stop
first=$(bad_nodes)
[ "$(echo "$first" | wc -w)" = 1 ] || { echo "   TIMEOUT: v3 reached more than one node: $first" >&2; exit 1; }
echo "   v3 is on $first only; its pod crashes and never becomes available:"
if "$NODEAGENT" rollout status logging/log-shipper --server "$FLEET" --timeout 5 | sed 's/^/   /'; then
    echo "   TIMEOUT: rollout status said the bad rollout finished" >&2; exit 1
fi
say "   ... and roll it back: nodeagent rollout undo logging/log-shipper"
"$NODEAGENT" rollout undo logging/log-shipper --server "$FLEET" | sed 's/^/   /'
wait_until 90 "log-shipper v2 ready again on all 3 nodes" \
    'ds("log-shipper")["numberReady"] == 3 and ds("log-shipper").get("servedDiffersFromFile", True)'
"$NODEAGENT" rollout history logging/log-shipper --server "$FLEET" | sed 's/^/   /'
echo "   the file still says v3; serve keeps handing out v2 (servedDiffersFromFile) until the file changes:"
edit "$SHIPPER" 'text = text.replace("(v3)", "(v2)").replace("\"exit 1; while true;", "\"while true;")'
wait_until 60 "the file is v2 again and serve hands out what it says" \
    'not ds("log-shipper").get("servedDiffersFromFile") and ds("log-shipper")["numberReady"] == 3'
pause

say "5. Stop node-b: after the grace period the fleet shows it NotReady"
compose stop -t 2 node-b >/dev/null
wait_until 90 "node-b is not ready" 'not node("node-b")["ready"]'
"$NODEAGENT" status --server "$FLEET" | sed -n '/NAME *STATUS/,$p' || true
say "   ... and start it again: it reports in and starts its pods again"
compose start node-b >/dev/null
wait_until 180 "node-b ready and the fleet converged" "$CONVERGED"
pause

say "6. Delete a DaemonSet (node-monitor): its pods are removed on every node"
rm -f "$MONITOR"
wait_until 90 "node-monitor gone from the fleet" 'ds("node-monitor") is None or ds("node-monitor")["currentNumberScheduled"] == 0'
# the fleet view follows the nodes' reports; a container may still be in its grace period: wait for the engines
deadline=$((SECONDS + 90))
while :; do
    running=""
    for n in node-a node-b node-c; do
        if compose exec -T "$n" sh -c 'docker ps --format "{{.Names}}"' | grep -q monitor; then
            running="$running $n"
        fi
    done
    [ -z "$running" ] && break
    if [ $SECONDS -ge $deadline ]; then
        echo "   node-monitor still runs on$running" >&2
        exit 1
    fi
    sleep 2
done
echo "   ok: no node-monitor container on any node"

say "Tour complete; restoring the demo's files (node-monitor comes back)"
