"""What the commands print: the JSON documents of `plan` and `sync`, and kubectl-style tables.

Every table cell passes `clean`, since cells may hold remote text (node names, errors from a fleet): a
terminal escape sequence from a hostile node must not reach the operator's terminal. `status -o json`
is the node report's `status` (`fleet.report.status_json`).
"""

from __future__ import annotations

import re
from typing import Any, TextIO

from nodeagent.agent import agent as agent_mod
from nodeagent.agent import plan, status
from nodeagent.fleet import rolloutview, view

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def clean(text: object) -> str:
    """Remote text made safe for a terminal: control characters (escape sequences) become `?`."""
    return _CONTROL.sub("?", str(text))


def table(rows: list[list[str]], out: TextIO, *, clean_cells: bool = True) -> None:
    """Columns padded to their widest cell, three spaces apart, as kubectl prints them."""
    if not rows:
        return
    if clean_cells:
        rows = [[clean(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        out.write("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")


def _target(namespace: str, pod: str, container: str | None) -> str:
    return f"{namespace}/{pod}" + (f" container {container}" if container else "")


def _waiting(w: plan.Waiting, now: float) -> str:
    target = _target(w.namespace, w.pod, w.container)
    if w.busy:
        return f"{target}: {w.reason}, its worker is at it"
    return f"{target}: {w.reason}, next try in {max(0.0, w.until - now):.0f}s"


def _yes(b: bool) -> str:
    return "yes" if b else "no"


def _actions(actions: tuple[plan.Action, ...]) -> str:
    return ", ".join(f"{x.verb} {x.container or x.pod}" for x in actions) or "-"


# --- plan, sync ---------------------------------------------------------------------------------


def plan_json(a: agent_mod.Agent, result: agent_mod.PassResult) -> dict[str, Any]:
    p = result.plan
    daemonsets = []
    for d in p.daemonsets:
        daemonsets.append(
            {
                "namespace": d.namespace,
                "name": d.name,
                "source": d.source,
                "revision": d.desired.spec_hash,
                "shouldRun": d.decision.should_run,
                "shouldContinueRunning": d.decision.should_continue_running,
                "reasons": list(d.decision.reasons),
                "running": d.running,
                "pods": [
                    {
                        "name": pod.name,
                        "revision": pod.spec_hash,
                        "upToDate": pod.spec_hash == d.desired.spec_hash and pod.name == d.desired.name,
                        "adopted": pod.owner != d.desired.owner,
                    }
                    for pod in d.pods
                ],
                "actions": [x.to_json() for x in d.actions],
            }
        )
    statics = [
        {
            "namespace": s.namespace,
            "name": s.name,
            "source": s.source,
            "revision": s.desired.spec_hash,
            "running": s.running,
            "actions": [x.to_json() for x in s.actions],
        }
        for s in p.static_pods
    ]
    return {
        "node": a.node.to_json(),
        "runtime": {"available": a.runtime is not None},
        "daemonSets": daemonsets,
        "staticPods": statics,
        "otherActions": [x.to_json() for x in p.other_actions],
        "orphanedPods": [
            {"namespace": o.namespace, "name": o.name, "revision": o.spec_hash, "formerOwner": o.owner}
            for o in p.orphans
        ],
        "waiting": [
            {
                "namespace": w.namespace,
                "pod": w.pod,
                "container": w.container,
                "reason": w.reason,
                "until": None if w.busy else w.until,
            }
            for w in p.waiting
        ],
        "errors": [e.to_json("source") for e in result.desired.errors],
        "warnings": [w.to_json("source") for w in result.desired.warnings],
    }


def sync_json(a: agent_mod.Agent, result: agent_mod.PassResult, dry_run: bool) -> dict[str, Any]:
    """`sync -o json`: the plan, and what became of each action."""
    doc = plan_json(a, result)
    doc["dryRun"] = dry_run
    doc["results"] = [
        {**o.action.to_json(), "ok": o.ok, "error": o.message, "errorReason": o.reason}
        for o in result.outcomes
    ]
    return doc


def print_plan(a: agent_mod.Agent, result: agent_mod.PassResult, out: TextIO) -> None:
    p = result.plan
    taints = ",".join(
        f"{t.key}={t.value}:{t.effect}" if t.value else f"{t.key}:{t.effect}" for t in a.node.taints
    )
    out.write(f"NODE {a.node.name}  taints: {taints or '<none>'}")
    out.write("" if a.runtime is not None else "  (docker: not reachable, observed state unknown)")
    out.write("\n\n")
    rows = [["NAMESPACE", "DAEMONSET", "SHOULD-RUN", "RUNNING", "REVISION", "ACTIONS", "WHY"]]
    for d in p.daemonsets:
        why = "; ".join(d.decision.reasons)
        rows.append(
            [
                d.namespace,
                d.name,
                _yes(d.decision.should_run),
                _yes(d.running),
                d.desired.spec_hash,
                _actions(d.actions),
                why or "-",
            ]
        )
    if len(rows) > 1:
        table(rows, out)
    else:
        out.write("No DaemonSets.\n")
    if p.static_pods:
        out.write("\n")
        rows = [["NAMESPACE", "STATIC POD", "RUNNING", "ACTIONS"]]
        for s in p.static_pods:
            rows.append([s.namespace, s.name, _yes(s.running), _actions(s.actions)])
        table(rows, out)
    all_actions = p.actions
    if all_actions:
        out.write("\nActions:\n")
        for x in all_actions:
            out.write(f"  {x.verb:8} {_target(x.namespace, x.pod, x.container)}: {x.reason}\n")
    for w in p.waiting:
        out.write(f"  waiting  {_waiting(w, a.clock())}\n")
    if result.desired.errors:
        _errors(result, out)
    if result.desired.warnings:
        out.write(f"\n{len(result.desired.warnings)} warning(s); `nodeagent validate` lists them.\n")


def print_sync(a: agent_mod.Agent, result: agent_mod.PassResult, dry_run: bool, out: TextIO) -> None:
    actions = result.plan.actions
    if not actions:
        out.write("Nothing to do: this node runs what its sources say.\n")
    for o in result.outcomes:
        x = o.action
        mark = "ok" if o.ok else f"FAILED ({o.reason}: {o.message})"
        out.write(f"{x.verb:8} {_target(x.namespace, x.pod, x.container)}: {x.reason} ... {mark}\n")
    if dry_run:
        for x in actions:
            out.write(f"would {x.verb:8} {_target(x.namespace, x.pod, x.container)}: {x.reason}\n")
    for w in result.plan.waiting:
        out.write(f"waiting  {_waiting(w, a.clock())}\n")
    for e in result.desired.errors:
        out.write(f"error: {e.render()}\n")


def _errors(result: agent_mod.PassResult, out: TextIO) -> None:
    """Invalid or policy-refused manifests: why a DaemonSet is held back."""
    out.write("\nErrors (the last good version stays in force):\n")
    for e in result.desired.errors:
        out.write(f"  {e.render()}\n")


# --- status -------------------------------------------------------------------------------------


def print_status(a: agent_mod.Agent, result: agent_mod.PassResult, out: TextIO) -> None:
    now = a.clock()
    p = result.plan
    rows = [
        [
            "NAMESPACE",
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "NODE SELECTOR",
            "AGE",
        ]
    ]
    pods: list[status.PodStatus] = []
    for d in p.daemonsets:
        s = status.daemonset_status(d, p.waiting, now, p.readiness, p.terminating)
        pods += s.pods
        started = [x.started_at for x in s.pods if x.started_at is not None]
        rows.append(
            [
                s.namespace,
                s.name,
                *(str(n) for n in s.counters[:5]),
                s.node_selector,
                status.age(now - min(started)) if started else "<none>",
            ]
        )
    for sp in p.static_pods:
        pods += status.static_pod_status(sp, p.waiting, p.readiness, p.terminating)
    pods += status.withdrawn_statuses(p)
    orphans = status.orphan_statuses(p)
    if len(rows) > 1:
        table(rows, out)
    else:
        out.write("No DaemonSets on this node's sources.\n")
    out.write("\n")
    prow = [["NAMESPACE", "POD", "READY", "STATUS", "RESTARTS", "AGE", "REVISION"]]
    for ps in pods + orphans:
        ready = f"{sum(c.ready for c in ps.containers)}/{len(ps.containers) or 1}"  # app containers
        age = status.age(now - ps.started_at) if ps.started_at is not None else "<none>"
        rev = ps.revision + (
            " (orphaned)" if ps in orphans else "" if ps.up_to_date or ps.terminating else " (outdated)"
        )
        prow.append([ps.namespace, ps.name, ready, ps.status, str(ps.restart_count), age, rev])
    if len(prow) > 1:
        table(prow, out)
    else:
        out.write("No pods.\n")
    for b in sorted(result.busy.values(), key=lambda b: b.owner):
        what = "stopping " + ", ".join(f"{ns}/{n}" for ns, n in b.terminating) if b.terminating else b.reason
        late = f"; STUCK: past its deadline by {now - b.deadline:.0f}s" if b.stuck else ""
        detail = f"; {b.detail}" if b.detail else ""
        out.write(f"\nwork in flight: {b.owner}: {what} for {now - b.started:.0f}s{detail}{late}")
    if result.busy:
        out.write("\n")
    if result.desired.errors:
        _errors(result, out)


# --- the fleet (`status --server`) ----------------------------------------------------------------


def print_fleet(doc: dict[str, Any], out: TextIO) -> None:
    head = ["NAMESPACE", "NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "MISSCHEDULED"]
    rows = [[*head, *rolloutview.ROLLOUT_HEADERS]] + [
        [
            d["namespace"],
            d["name"],
            *(str(d.get(k, 0)) for k in view.COUNTERS),
            *rolloutview.rollout_cells(d),
        ]
        for d in doc["daemonSets"]
    ]
    if len(rows) > 1:
        table(rows, out)
    else:
        out.write("No DaemonSets.\n")
    out.write("\n")
    nrows = [["NAME", "STATUS", "TAINTS", "LAST SEEN", "PODS", "VERSION"]]
    for n in doc["nodes"]:
        taints = ",".join(f"{t.get('key')}:{t.get('effect')}" for t in n.get("taints", [])) or "<none>"
        seen = status.age(float(n.get("lastSeenSecondsAgo", 0)))
        if n.get("mode") == view.MODE_SYNC:
            seen = f"last synced {seen} ago"  # no agent runs there: it reports when it is synced
        ready = "Ready" if n["ready"] else "NotReady"
        nrows.append([n["name"], ready, taints, seen, str(n.get("pods", 0)), n.get("agentVersion", "")])
    if len(nrows) > 1:
        table(nrows, out)
    else:
        out.write("No nodes have reported.\n")
    for e in doc.get("errors", []):
        where = e["file"] + (f"#{e['document']}" if e.get("document") is not None else "")
        line = f"error: {where}: {e['path'] + ': ' if e.get('path') else ''}{e['message']}"
        out.write(clean(line) + "\n")
