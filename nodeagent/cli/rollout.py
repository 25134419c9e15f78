"""`nodeagent rollout status|history|undo|pause|resume|restart|plan NS/NAME --server URL`: kubectl's
rollout commands against `nodeagent serve` (its /api/rollouts endpoints, fleet/controller.py)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

from nodeagent.sources import http

ACTIONS = ("status", "history", "undo", "pause", "resume", "restart", "plan")
_DONE = {"pause": "paused", "resume": "resumed", "restart": "restarted", "undo": "rolled back"}


def add_parser(sub: Any) -> None:
    ro = sub.add_parser("rollout", help="fleet rollouts through `nodeagent serve` (kubectl rollout)")
    ro.add_argument("action", choices=ACTIONS)
    ro.add_argument("daemonset", metavar="NAMESPACE/NAME")
    ro.add_argument("--server", required=True, metavar="URL", help="the `nodeagent serve` URL")
    ro.add_argument("--token-file", help="bearer token for --server")
    ro.add_argument("--ca-file", help="CA bundle to verify an https --server")
    ro.add_argument("--timeout", type=float, default=0.0, help="status: give up after S seconds (0: never)")
    ro.add_argument("--to-revision", type=int, default=0, help="undo: the revision to go back to")
    ro.set_defaults(rollout_main=main)


def _url(args: argparse.Namespace, suffix: str = "") -> str:
    ns, _, name = args.daemonset.partition("/")
    if not name:
        ns, name = "default", ns
    return f"{args.server.rstrip('/')}/api/rollouts/{ns}/{name}{suffix}"


def _call(args: argparse.Namespace, method: str, suffix: str = "", body: object | None = None) -> Any:
    ctx = http.ssl_context(args.ca_file) if args.server.startswith("https:") else None
    headers = {"Accept": "application/json", **http.bearer(args.token_file)}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    resp = http.request(method, _url(args, suffix), headers=headers, body=data, context=ctx)
    if resp.status != 200:
        raise http.FetchError(f"HTTP {resp.status}: {resp.body[:300].decode('utf-8', 'replace').strip()}")
    return json.loads(resp.body)


def blast_radius(doc: dict[str, Any]) -> str:
    b = doc.get("blastRadius") or {}

    def secs(v: object) -> str:
        return "-" if v is None else f"{v}s"

    detect, revert = secs(b.get("timeToDetectSeconds")), secs(b.get("timeToRevertSeconds"))
    revision = doc.get("failedRevision") or doc.get("updateRevision")
    return (
        f"blast radius: {b.get('exposedNodes', 0)} node(s) exposed to revision {revision}, "
        f"time to detect {detect}, time to revert {revert}"
    )


def status(args: argparse.Namespace, out: TextIO) -> int:
    """Wait like `kubectl rollout status`: progress lines, then 0 on Complete, 1 otherwise."""
    ref = args.daemonset
    deadline = time.monotonic() + args.timeout if args.timeout else None
    last = ""
    while True:
        doc = _call(args, "GET")
        phase = doc["phase"]
        if phase == "Complete":
            print(f'daemon set "{ref}" successfully rolled out', file=out)
            print(blast_radius(doc), file=out)
            return 0
        reverting = (
            phase == "RolledBack" and (doc.get("blastRadius") or {}).get("timeToRevertSeconds") is None
        )
        timed_out = deadline is not None and time.monotonic() >= deadline
        if phase in ("Failed", "RolledBack") and (not reverting or timed_out):
            print(f'error: daemon set "{ref}" rollout {phase}: {doc.get("message", "")}', file=out)
            print(blast_radius(doc), file=out)
            return 1
        desired, updated = doc["desiredNumberScheduled"], doc["updatedNumberScheduled"]
        available = doc["numberAvailable"]
        wait = f'Waiting for daemon set "{ref}" rollout to finish'
        if phase == "Paused":
            line = f"{wait}: paused ({updated} of {desired} updated)"
        elif updated < desired:
            line = f"{wait}: {updated} out of {desired} new pods have been updated..."
        else:
            line = f"{wait}: {available} of {updated} updated pods are available..."
        if doc.get("pendingNodes"):
            line += f" (pending NotReady: {', '.join(doc['pendingNodes'])})"
        if phase == "RolledBack":
            line = f"{wait}: rolling back to revision {doc.get('updateRevision')}..."
        if line != last:
            print(line, file=out, flush=True)
            last = line
        if timed_out:
            print(f'error: timed out waiting for daemon set "{ref}" rollout', file=out)
            return 1
        time.sleep(0.5)


def main(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    try:
        if args.action == "status":
            return status(args, out)
        if args.action == "history":
            doc = _call(args, "GET", "/history")
            print(f"daemonset.apps/{args.daemonset.split('/')[-1]}", file=out)
            print(f"{'REVISION':<10}CHANGE-CAUSE", file=out)
            for r in doc["revisions"]:
                print(f"{r['revision']:<10}{r['changeCause'] or '<none>'}", file=out)
            return 0
        if args.action == "plan":
            doc = _call(args, "GET", "/plan")
            for i, wave in enumerate(doc["waves"], 1):
                print(f"wave {i}: {' '.join(wave)}", file=out)
            return 0
        body = {"toRevision": args.to_revision} if args.action == "undo" and args.to_revision else {}
        _call(args, "POST", f"/{args.action}", body)
        print(f"daemonset.apps/{args.daemonset.split('/')[-1]} {_DONE[args.action]}", file=out)
        return 0
    except http.FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
