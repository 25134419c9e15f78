# Shared by the demo scripts: compose command, project name, fleet queries. Sourced, not run.
DEMO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$DEMO_DIR/.." && pwd)
export DEMO_PORT=${DEMO_PORT:-8080}
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-nodeagent-demo}
FLEET=http://127.0.0.1:$DEMO_PORT
NODEAGENT=${NODEAGENT:-$REPO_DIR/.venv/bin/nodeagent}

if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose -f "$DEMO_DIR/docker-compose.yml")
else
    COMPOSE=(docker-compose -f "$DEMO_DIR/docker-compose.yml")
fi

compose() { "${COMPOSE[@]}" "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

fleet_json() { curl -fsS "$FLEET/api/fleet" 2>/dev/null; }

# fleet_check PYTHON-EXPR: true when the expression holds for the fleet JSON `f`
# (helpers: ds(name) -> the DaemonSet dict, node(name) -> the node dict)
fleet_check() {
    fleet_json | python3 -c '
import json, sys
f = json.load(sys.stdin)
def ds(name):
    return next((d for d in f["daemonSets"] if d["name"] == name), None)
def node(name):
    return next((n for n in f["nodes"] if n["name"] == name), None)
sys.exit(0 if eval(sys.argv[1]) else 1)' "$1" 2>/dev/null
}

# wait_until SECONDS DESCRIPTION PYTHON-EXPR
wait_until() {
    local deadline=$((SECONDS + $1))
    while [ $SECONDS -lt $deadline ]; do
        if fleet_check "$3"; then echo "   ok: $2"; return 0; fi
        sleep 1
    done
    echo "   TIMEOUT waiting for: $2" >&2
    fleet_json | python3 -m json.tool >&2 || true
    return 1
}

node_pods() {  # the agent's own view of one node (kubectl get pods, on that node)
    compose exec -T "$1" nodeagent --config /etc/nodeagent/config.yaml status
}

CONVERGED='(node("node-a") and node("node-b") and node("node-c") and all(n["ready"] for n in f["nodes"])
 and ds("log-shipper") and ds("log-shipper")["numberReady"] == 3
 and ds("gpu-agent") and ds("gpu-agent")["numberReady"] == 1
 and ds("node-monitor") and ds("node-monitor")["numberReady"] == 2)'
