"""The `nodeagent` command: argument parsing, exit codes and output formatting only.

Exit codes: 0 ok, 1 a check or an action failed, 2 usage or config error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any, TextIO

import structlog

import nodeagent
from nodeagent import errors, settings
from nodeagent import runtime as rt
from nodeagent.agent import agent as agent_mod
from nodeagent.agent import events, identity, plan, reconciler, status
from nodeagent.cli import ops as opscli
from nodeagent.cli import rollout as rolloutcli
from nodeagent.fleet import annotations as rollout_annotations
from nodeagent.fleet import report
from nodeagent.fleet import rolloutview as rollout_view
from nodeagent.fleet import view as fleet
from nodeagent.k8s import manifests, model, node, policy
from nodeagent.service import health, kubestate, logs, metrics
from nodeagent.service import systemd as sd

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
REPORT_EVENTS = 20  # the newest events a node report carries to serve

log = structlog.get_logger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nodeagent",
        description="Run Kubernetes DaemonSets and static pods on this Docker host.",
    )
    p.add_argument(
        "--config",
        default=None,
        help="agent config file (default: $NODEAGENT_CONFIG or /etc/nodeagent/config.yaml)",
    )
    p.add_argument(
        "--log-level", default=None, choices=logs.LEVELS, help="default: info for run, warning otherwise"
    )
    p.add_argument("--log-format", default="auto", choices=("auto", "json", "console"))
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    v = sub.add_parser("validate", help="lint manifests (files or directories)")
    v.add_argument("paths", nargs="+", metavar="PATH")
    v.add_argument("-o", "--output", default="text", choices=("text", "json"))
    v.add_argument(
        "--policy",
        default="privileged",
        choices=("privileged", "baseline", "restricted"),
        help="also check the Pod Security Standards level a source would enforce (default: privileged)",
    )

    pl = sub.add_parser(
        "plan", help="what this node should run, what it runs, and the actions a sync would take"
    )
    pl.add_argument("-o", "--output", default="table", choices=("table", "json"))

    sy = sub.add_parser("sync", help="one reconcile pass, then exit")
    sy.add_argument("--dry-run", action="store_true", help="print the actions without applying them")
    sy.add_argument("-o", "--output", default="table", choices=("table", "json"))

    sub.add_parser("run", help="the long-running agent (SIGHUP reloads the config, SIGTERM exits)")

    st = sub.add_parser("status", help="this node's DaemonSets and pods, kubectl-style")
    st.add_argument("-o", "--output", default="table", choices=("table", "json"))
    st.add_argument("--server", metavar="URL", help="show the fleet of this `nodeagent serve` instead")
    st.add_argument("--token-file", help="bearer token for --server")
    st.add_argument("--ca-file", help="CA bundle to verify an https --server")
    st.add_argument("--client-cert", help="client certificate (PEM) for a --server that requires mTLS")
    st.add_argument("--client-key", help="the client certificate's key (PEM)")

    sv = sub.add_parser("serve", help="serve a manifest directory to a fleet, and collect node status")
    sv.add_argument("--dir", required=True, help="directory of manifests to publish")
    sv.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT")
    sv.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    sv.add_argument("--tls-key", help="the certificate's key (PEM)")
    sv.add_argument("--token-file", help="require `Authorization: Bearer <contents>`")
    sv.add_argument("--client-ca", help="require client certificates signed by this CA (mutual TLS)")
    sv.add_argument("--grace", type=float, default=40.0, help="seconds of silence before a node is NotReady")
    sv.add_argument(
        "--state-dir",
        help="where rollouts are kept (revisions, phases, node assignments; SQLite); default "
        "/var/lib/nodeagent-serve, or memory only (with a warning) when that cannot be created",
    )
    sv.add_argument(
        "--signing-key",
        metavar="FILE",
        help="sign each bundle with this minisign secret key (`minisign -G -W`); served as "
        "/manifests.minisig and in the X-Nodeagent-Signature header",
    )
    sv.add_argument(
        "--node-tokens",
        metavar="DIR",
        help="per-node bearer tokens: a file per node, named after it; a node may post only its own status",
    )
    sv.add_argument(
        "--node-expiry",
        type=float,
        default=24 * 3600.0,
        metavar="SECONDS",
        help="forget a node NotReady for this long (default one day)",
    )
    sv.add_argument("--max-nodes", type=int, default=10_000, help="nodes known at once (default 10000)")
    sv.add_argument(
        "--max-report-bytes", type=int, default=1024 * 1024, help="largest node report (default 1 MiB)"
    )
    sv.add_argument(
        "--max-connections",
        type=int,
        default=10_000,
        help="open connections at once (default 10000, lowered to fit the open-file limit)",
    )

    nd = sub.add_parser("node", help="manage the nodes a `nodeagent serve` knows")
    nd_sub = nd.add_subparsers(dest="node_command", required=True)
    nd_del = nd_sub.add_parser("delete", help="forget a node (it re-registers if it reports again)")
    nd_del.add_argument("name", metavar="NAME")
    nd_del.add_argument("--server", metavar="URL", required=True, help="the `nodeagent serve` URL")
    nd_del.add_argument("--token-file", help="bearer token for --server")
    nd_del.add_argument("--ca-file", help="CA bundle to verify an https --server")
    nd_del.add_argument("--client-cert", help="client certificate (PEM) for mTLS")
    nd_del.add_argument("--client-key", help="the client certificate's key (PEM)")

    sg = sub.add_parser("sign", help="sign a bundle with a minisign key: writes FILE.minisig")
    sg.add_argument("file", metavar="FILE")
    sg.add_argument("--key", required=True, metavar="K", help="minisign secret key without a password")
    sg.add_argument("--output", metavar="SIG", help="where to write the signature (default: FILE.minisig)")
    sg.add_argument("--trusted-comment", help="signed comment (default: timestamp and file name)")

    orph = sub.add_parser(
        "orphan",
        help="when this DaemonSet is withdrawn, leave its pods running, ownerless (like kubectl delete "
        "--cascade=orphan); a later DaemonSet whose selector matches them adopts them",
    )
    orph.add_argument("daemonset", metavar="NAMESPACE/NAME")
    orph.add_argument("--undo", action="store_true", help="withdraw the request (pods are deleted again)")

    dl = sub.add_parser("delete", help="delete a pod: stop and remove its containers (kubectl delete pod)")
    dl.add_argument("kind", choices=("pod",))
    dl.add_argument("pod", metavar="NAMESPACE/NAME")

    opscli.add_parsers(sub)  # events, describe, logs
    rolloutcli.add_parser(sub)  # rollout status|history|undo|pause|resume|restart|plan
    sub.add_parser("version", help="print the version")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = args.log_level or ("info" if args.command == "run" else "warning")
    logs.configure(level, args.log_format)
    if args.command is None:
        _parser().print_help(sys.stderr)
        return EXIT_USAGE
    try:
        if args.command == "validate":
            return cmd_validate(args.paths, args.output, sys.stdout, args.policy)
        if args.command == "sign":
            return cmd_sign(args.file, args.key, args.output, args.trusted_comment)
        if args.command == "version":
            print(f"nodeagent {nodeagent.__version__}")
            return EXIT_OK
        if args.command == "serve":
            return cmd_serve(args)
        if args.command in opscli.COMMANDS:
            return opscli.main(args)
        if args.command == "rollout":
            return int(args.rollout_main(args))
        if args.command == "status" and args.server:
            return cmd_fleet_status(
                args.server,
                args.output,
                sys.stdout,
                args.token_file,
                args.ca_file,
                client_cert=args.client_cert,
                client_key=args.client_key,
            )
        if args.command == "node":
            return cmd_node_delete(args)
        cfg = settings.load(args.config or settings.default_config_path())
        if args.command == "plan":
            return cmd_plan(cfg, args.output, sys.stdout)
        if args.command == "sync":
            return cmd_sync(cfg, args.dry_run, args.output, sys.stdout)
        if args.command == "status":
            return cmd_status(cfg, args.output, sys.stdout)
        if args.command == "run":
            return cmd_run(cfg, args.config or settings.default_config_path())
        if args.command == "orphan":
            return cmd_orphan(cfg, args.daemonset, args.undo, sys.stdout)
        if args.command == "delete":
            return cmd_delete_pod(cfg, args.pod, sys.stdout)
    except errors.ConfigError as exc:
        print(f"nodeagent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_OK
    return EXIT_USAGE


# --- validate ---------------------------------------------------------------------------------


def _problem_json(p: model.Problem) -> dict[str, object]:
    return {
        "file": p.file,
        "document": p.document,
        "kind": p.kind,
        "name": p.name,
        "path": p.path,
        "message": p.message,
    }


def cmd_validate(paths: Sequence[str], output: str, out: TextIO, level: str = "privileged") -> int:
    result = rollout_annotations.check(manifests.load_paths(paths))  # nodeagent.io/* rollout annotations
    if level != policy.PRIVILEGED:  # as a source with `policy: LEVEL` would refuse them
        pol = policy.Policy(level)
        checked = [(d, policy.problems(d, pol)) for d in result.documents]
        result = dataclasses.replace(
            result,
            documents=tuple(d for d, refused in checked if not refused),
            errors=tuple(sorted((*result.errors, *(p for _, ps in checked for p in ps)), key=_where)),
        )
    if output == "json":
        doc = {
            "valid": not result.errors,
            "errors": [_problem_json(p) for p in result.errors],
            "warnings": [_problem_json(p) for p in result.warnings],
        }
        out.write(json.dumps(doc, indent=2) + "\n")
    else:
        for p in result.errors:
            out.write(p.render() + "\n")
        for p in result.warnings:
            out.write("warning: " + p.render() + "\n")
        files = len({d.file for d in result.documents} | {p.file for p in result.errors})
        print(
            f"{len(result.documents)} valid object(s) in {files} file(s); "
            f"{len(result.errors)} error(s), {len(result.warnings)} warning(s)",
            file=sys.stderr,
        )
    return EXIT_FAILED if result.errors else EXIT_OK


def _where(p: model.Problem) -> tuple[str, int]:
    return (p.file, -1 if p.document is None else p.document)


# --- sign ---------------------------------------------------------------------------------------


def cmd_sign(file: str, key_file: str, output: str | None, trusted_comment: str | None) -> int:
    """`nodeagent sign FILE --key K`: FILE.minisig, as `minisign -S -s K -m FILE` writes it."""
    from nodeagent.sources import signing

    key = signing.load_secret_key(key_file)  # a ConfigError: exit 2 with the file named
    try:
        with open(file, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        print(f"nodeagent sign: cannot read {file}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        sig = signing.sign(data, key, file_name=file, trusted_comment=trusted_comment)
    except ValueError as exc:
        print(f"nodeagent sign: {exc}", file=sys.stderr)
        return EXIT_USAGE
    target = output or file + signing.SUFFIX
    tmp = f"{target}.tmp{os.getpid()}"
    with open(tmp, "wb") as fh:
        fh.write(sig)
    os.replace(tmp, target)
    print(f"wrote {target} (key {key.id_hex})", file=sys.stderr)
    return EXIT_OK


# --- agent wiring for one-shot commands --------------------------------------------------------


def _runtime(cfg: settings.Settings) -> rt.ContainerRuntime | None:
    """The Docker runtime, or None (with a log line) when no engine answers."""
    from nodeagent.runtime import docker as docker_rt

    runtime = docker_rt.DockerRuntime(
        cfg.docker_host, node_name=_node_name(cfg), pull_idle_timeout=cfg.image_pull_deadline
    )
    try:
        if runtime.ping():
            return runtime
    except errors.NodeAgentError:
        pass
    log.warning("docker_unavailable", host=cfg.docker_host or os.environ.get("DOCKER_HOST", "default socket"))
    return None


def _node_name(cfg: settings.Settings) -> str:
    return node.build(cfg.node.name, cfg.node.labels, cfg.node.taints, cfg.node.unschedulable).name


def _one_shot_agent(cfg: settings.Settings) -> agent_mod.Agent:
    a = agent_mod.Agent(cfg, _runtime(cfg), watch=False)
    a.relist()
    return a


# --- plan -------------------------------------------------------------------------------------


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
    errs = [
        {
            "source": e.file,
            "document": e.document,
            "kind": e.kind,
            "name": e.name,
            "path": e.path,
            "message": e.message,
        }
        for e in result.desired.errors
    ]
    warns = [
        {
            "source": w.file,
            "document": w.document,
            "kind": w.kind,
            "name": w.name,
            "path": w.path,
            "message": w.message,
        }
        for w in result.desired.warnings
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
        "errors": errs,
        "warnings": warns,
    }


def _table(rows: list[list[str]], out: TextIO) -> None:
    if not rows:
        return
    rows = [[_clean(c) for c in r] for r in rows]  # cells may hold remote text (node names, errors)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        out.write("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")


def _waiting(w: plan.Waiting, now: float) -> str:
    target = f"{w.namespace}/{w.pod}" + (f" container {w.container}" if w.container else "")
    if w.busy:
        return f"{target}: {w.reason}, its worker is at it"
    return f"{target}: {w.reason}, next try in {max(0.0, w.until - now):.0f}s"


def _yes(b: bool) -> str:
    return "yes" if b else "no"


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
        acts = ", ".join(f"{x.verb} {x.container or x.pod}" for x in d.actions) or "-"
        rows.append(
            [
                d.namespace,
                d.name,
                _yes(d.decision.should_run),
                _yes(d.running),
                d.desired.spec_hash,
                acts,
                why or "-",
            ]
        )
    if len(rows) > 1:
        _table(rows, out)
    else:
        out.write("No DaemonSets.\n")
    if p.static_pods:
        out.write("\n")
        rows = [["NAMESPACE", "STATIC POD", "RUNNING", "ACTIONS"]]
        for s in p.static_pods:
            acts = ", ".join(f"{x.verb} {x.container or x.pod}" for x in s.actions) or "-"
            rows.append([s.namespace, s.name, _yes(s.running), acts])
        _table(rows, out)
    all_actions = p.actions
    if all_actions:
        out.write("\nActions:\n")
        for x in all_actions:
            target = f"{x.namespace}/{x.pod}" + (f" container {x.container}" if x.container else "")
            out.write(f"  {x.verb:8} {target}: {x.reason}\n")
    for w in p.waiting:
        out.write(f"  waiting  {_waiting(w, a.clock())}\n")
    if result.desired.errors:
        out.write("\nErrors (the last good version stays in force):\n")
        for e in result.desired.errors:
            out.write(f"  {e.render()}\n")
    if result.desired.warnings:
        out.write(f"\n{len(result.desired.warnings)} warning(s); `nodeagent validate` lists them.\n")


def cmd_plan(cfg: settings.Settings, output: str, out: TextIO) -> int:
    a = _one_shot_agent(cfg)
    result = a.reconcile(dry_run=True)
    if output == "json":
        out.write(json.dumps(plan_json(a, result), indent=2) + "\n")
    else:
        print_plan(a, result, out)
    return EXIT_OK


# --- sync -------------------------------------------------------------------------------------


def cmd_sync(cfg: settings.Settings, dry_run: bool, output: str, out: TextIO) -> int:
    a = _one_shot_agent(cfg)
    if a.runtime is None and not dry_run:
        print("nodeagent: the Docker engine does not answer; nothing was done", file=sys.stderr)
        return EXIT_FAILED
    result = a.reconcile(dry_run=dry_run)
    if output == "json":
        doc = plan_json(a, result)
        doc["dryRun"] = dry_run
        doc["results"] = [
            {**o.action.to_json(), "ok": o.ok, "error": o.message, "errorReason": o.reason}
            for o in result.outcomes
        ]
        out.write(json.dumps(doc, indent=2) + "\n")
    else:
        actions = result.plan.actions
        if not actions:
            out.write("Nothing to do: this node runs what its sources say.\n")
        for o in result.outcomes:
            x = o.action
            target = f"{x.namespace}/{x.pod}" + (f" container {x.container}" if x.container else "")
            mark = "ok" if o.ok else f"FAILED ({o.reason}: {o.message})"
            out.write(f"{x.verb:8} {target}: {x.reason} ... {mark}\n")
        if dry_run:
            for x in actions:
                target = f"{x.namespace}/{x.pod}" + (f" container {x.container}" if x.container else "")
                out.write(f"would {x.verb:8} {target}: {x.reason}\n")
        for w in result.plan.waiting:
            out.write(f"waiting  {_waiting(w, a.clock())}\n")
        for e in result.desired.errors:
            out.write(f"error: {e.render()}\n")
    if cfg.status_server and not dry_run:
        report_sync(cfg, a, result)
    return EXIT_FAILED if result.failed else EXIT_OK


SYNC_REPORT_TIMEOUT = 5.0  # a cron job or an Ansible run must not hang on a status server that never answers


def report_sync(cfg: settings.Settings, a: agent_mod.Agent, result: agent_mod.PassResult) -> bool:
    """`sync`'s one status report (`"mode": "sync"`), so a node that is only synced shows in the fleet view.

    It describes what runs after the pass (observed again when the pass acted). A report that cannot be
    delivered is a logged warning, never the sync's failure: the node's work is done either way.
    """
    if result.outcomes and a.runtime is not None:
        result = a.reconcile(dry_run=True)
    reporter = report.Reporter(
        cfg.status_server or "", a.node.name, timeout=SYNC_REPORT_TIMEOUT, auth=report.credentials_for(cfg)
    )
    try:
        return reporter.post(node_report(a, result, mode=fleet.MODE_SYNC))
    finally:
        reporter.stop()


# --- status -----------------------------------------------------------------------------------


def status_json(a: agent_mod.Agent, result: agent_mod.PassResult) -> dict[str, Any]:
    now = a.clock()
    p = result.plan
    return {
        "node": a.node.name,
        "daemonSets": [
            status.daemonset_status(d, p.waiting, now, p.readiness, p.terminating).to_json()
            for d in p.daemonsets
        ],
        "staticPods": [
            ps.to_json()
            for s in p.static_pods
            for ps in status.static_pod_status(s, p.waiting, p.readiness, p.terminating)
        ],
        "orphanedPods": [ps.to_json() for ps in _orphans(p)],
        "terminatingPods": [ps.to_json() for ps in _withdrawn(p)],
        "workInFlight": [b.to_json() for _, b in sorted(result.busy.items())],
    }


def _orphans(p: plan.Plan) -> list[status.PodStatus]:
    """Ownerless pods (orphaned, not adopted yet): their revision is no DaemonSet's, so never up to date."""
    return [status.pod_status(o, "", p.waiting, p.readiness, terminating=p.terminating) for o in p.orphans]


def _withdrawn(p: plan.Plan) -> list[status.PodStatus]:
    """Pods being stopped whose DaemonSet or static pod is in no source any more (just withdrawn)."""
    return [
        status.pod_status(o, "", p.waiting, p.readiness, terminating=p.terminating)
        for o in p.unowned
        if o.key in p.terminating
    ]


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
                str(s.desired_number_scheduled),
                str(s.current_number_scheduled),
                str(s.number_ready),
                str(s.updated_number_scheduled),
                str(s.number_available),
                s.node_selector,
                status.age(now - min(started)) if started else "<none>",
            ]
        )
    for sp in p.static_pods:
        pods += status.static_pod_status(sp, p.waiting, p.readiness, p.terminating)
    pods += _withdrawn(p)
    orphans = _orphans(p)
    if len(rows) > 1:
        _table(rows, out)
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
        _table(prow, out)
    else:
        out.write("No pods.\n")
    for b in sorted(result.busy.values(), key=lambda b: b.owner):
        what = "stopping " + ", ".join(f"{ns}/{n}" for ns, n in b.terminating) if b.terminating else b.reason
        late = f"; STUCK: past its deadline by {now - b.deadline:.0f}s" if b.stuck else ""
        detail = f"; {b.detail}" if b.detail else ""
        out.write(f"\nwork in flight: {b.owner}: {what} for {now - b.started:.0f}s{detail}{late}")
    if result.busy:
        out.write("\n")
    if result.desired.errors:  # invalid or policy-refused manifests: why a DaemonSet is held back
        out.write("\nErrors (the last good version stays in force):\n")
        for e in result.desired.errors:
            out.write(f"  {e.render()}\n")


def cmd_status(cfg: settings.Settings, output: str, out: TextIO) -> int:
    a = _one_shot_agent(cfg)
    if a.runtime is None:
        print("nodeagent: the Docker engine does not answer", file=sys.stderr)
        return EXIT_FAILED
    result = a.reconcile(dry_run=True)
    if output == "json":
        out.write(json.dumps(status_json(a, result), indent=2) + "\n")
    else:
        print_status(a, result, out)
    return EXIT_OK


# --- orphan, delete pod -------------------------------------------------------------------------


def _ns_name(text: str) -> tuple[str, str] | None:
    ns, sep, name = text.partition("/")
    return (ns, name) if sep and ns and name and "/" not in name else None


def cmd_orphan(cfg: settings.Settings, daemonset: str, undo: bool, out: TextIO) -> int:
    """Record that this DaemonSet's pods outlive its withdrawal (stateDir/ownership.json).

    Works before the file is removed, or after (while the pods still run because not every source has
    spoken, or the agent is stopped); a running agent reads it on its next pass.
    """
    key = _ns_name(daemonset)
    if key is None:
        print(f"nodeagent: expected NAMESPACE/NAME, got {daemonset!r}", file=sys.stderr)
        return EXIT_USAGE
    owner = identity.owner_daemonset(*key)
    current = agent_mod.load_ownership(cfg.state_dir)
    policy = dict(current.policy)
    if undo:
        policy.pop(owner, None)
    else:
        policy[owner] = plan.POLICY_COMMAND
    agent_mod.save_ownership(cfg.state_dir, plan.Ownership(policy=policy, owners=current.owners))
    verb = "no longer orphans" if undo else "orphans"
    out.write(f"DaemonSet {key[0]}/{key[1]} {verb} its pods when it is withdrawn\n")
    return EXIT_OK


def cmd_delete_pod(cfg: settings.Settings, pod: str, out: TextIO) -> int:
    """`kubectl delete pod`: stop (with the pod's grace period) and remove every container of the pod.

    Its DaemonSet, if any, then creates its current revision (that is how OnDelete updates a pod); an
    orphaned pod is simply gone.
    """
    key = _ns_name(pod)
    if key is None:
        print(f"nodeagent: expected NAMESPACE/NAME, got {pod!r}", file=sys.stderr)
        return EXIT_USAGE
    runtime = _runtime(cfg)
    if runtime is None:
        print("nodeagent: the Docker engine does not answer", file=sys.stderr)
        return EXIT_FAILED
    from nodeagent.agent import execute

    found = plan.group_pods(runtime.list_managed()).get(key)
    if found is None:
        print(f"nodeagent: pod {key[0]}/{key[1]} not found on this node", file=sys.stderr)
        return EXIT_FAILED
    action = plan.delete_action(found, "deleted by `nodeagent delete pod`")
    host = execute.HostInfo(node_name=_node_name(cfg), host_ip="", state_dir=cfg.state_dir)
    [outcome] = execute.Executor(runtime, host).apply([action])
    events.record_outcomes(cfg.state_dir, [outcome], found.containers + found.init_containers, host.node_name)
    if not outcome.ok:
        print(f"nodeagent: {outcome.message}", file=sys.stderr)
        return EXIT_FAILED
    out.write(f"pod {key[0]}/{key[1]} deleted\n")
    return EXIT_OK


# --- run --------------------------------------------------------------------------------------


def cmd_run(cfg: settings.Settings, config_path: str) -> int:
    """The long-running agent. Stopping it never stops workloads."""
    runtime = _runtime(cfg)
    if runtime is None:
        # keep trying: the engine may start after us (systemd ordering is not a guarantee)
        from nodeagent.runtime import docker as docker_rt

        runtime = docker_rt.DockerRuntime(
            cfg.docker_host, node_name=_node_name(cfg), pull_idle_timeout=cfg.image_pull_deadline
        )
    loop: reconciler.Reconciler | None = None

    def wake() -> None:
        if loop is not None:
            loop.wake()

    a = agent_mod.Agent(cfg, runtime, watch=True, on_change=wake)
    a.publish_workers = True  # stateDir/workers.json: Terminating pods and work in flight, for `status`
    loop = _MeteredReconciler(a, resync_interval=cfg.resync_interval)
    reporter: report.Reporter | None = None
    if cfg.status_server:
        reporter = report.Reporter(cfg.status_server, a.node.name, auth=report.credentials_for(cfg))
        reporter.start()
    reload_requested = threading.Event()
    notifier = sd.Notifier()

    def stuck_sources() -> list[str]:
        return [p.message for s in a.sources if (p := _stuck(s)) is not None]

    monitor = health.Monitor(loop, stuck_sources=stuck_sources)
    status_line = ["starting"]

    def on_term(signum: int, frame: FrameType | None) -> None:
        log.info("agent_stopping", signal=signal.Signals(signum).name, workloads="left running")
        notifier.stopping()
        assert loop is not None
        loop.stop()

    def on_hup(signum: int, frame: FrameType | None) -> None:
        notifier.reloading()
        reload_requested.set()

    def reload() -> None:
        _reload(a, config_path)
        if monitor.ready:
            notifier.ready(status_line[0])  # after RELOADING=1; repeats are harmless
        wake()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, on_hup)

    watcher = threading.Thread(
        target=_watch_config,
        args=(config_path, reload_requested, loop, reload),
        name="config-watch",
        daemon=True,
    )
    server: health.Server | None = None
    if cfg.healthz.enabled:
        try:
            server = health.Server(monitor, cfg.healthz.host, cfg.healthz.port)
            server.start()
        except OSError as exc:  # a taken port must not stop the agent from keeping workloads running
            log.error("health_server_failed", address=cfg.healthz.address, error=str(exc))
            server = None
    watchdog: sd.Watchdog | None = None
    if notifier.enabled and notifier.watchdog_interval is not None:
        watchdog = sd.Watchdog(notifier, monitor.healthy, notifier.watchdog_interval)
        watchdog.start()
    a.start_sources()
    a.start_prober()
    log.info(
        "agent_started", node=a.node.name, sources=[s.name for s in a.sources], version=nodeagent.__version__
    )
    watcher.start()

    def on_pass(result: agent_mod.PassResult) -> None:
        doc = node_report(a, result)
        _record_metrics(result, doc)
        if reporter is not None:
            reporter.update(doc)
        line = _status_line(result, doc)
        if not notifier.is_ready:
            notifier.ready(line)  # READY=1 after the first complete pass
        elif line != status_line[0]:
            notifier.status(line)
        status_line[0] = line

    loop.on_pass = on_pass
    try:
        loop.run()
    finally:
        if watchdog is not None:
            watchdog.stop()
        if server is not None:
            server.stop()
        a.stop_sources()
        a.stop_prober()
        if reporter is not None:
            reporter.stop()
        a.publish_workers = False
        agent_mod.save_workers(a.settings.state_dir, {})  # work in flight is left to the engine
    log.info("agent_stopped", work_left_in_flight=sorted(a.workers.busy()) or None)
    return EXIT_OK


def _watch_config(
    path: str, reload_requested: threading.Event, loop: reconciler.Reconciler, reload: Callable[[], None]
) -> None:
    """Reloads on SIGHUP or a changed config file, in this thread, so a reload (and the READY=1 that
    ends it) never waits for a reconcile pass that may be failing."""

    def stamp() -> tuple[float, int] | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return (st.st_mtime, st.st_size)

    last = stamp()
    while not loop.stopping:
        requested = reload_requested.wait(1.0)
        now = stamp()
        if now != last:
            last = now
            requested = True
        if requested and not loop.stopping:
            reload_requested.clear()
            reload()


def _reload(a: agent_mod.Agent, path: str) -> None:
    try:
        cfg = settings.load(path)
    except errors.ConfigError as exc:
        log.error("config_reload_failed", error=str(exc), keeping="previous config")
        return
    a.reload(cfg)
    log.info("config_reloaded", node=a.node.name, labels=dict(a.node.labels), taints=len(a.node.taints))


# --- fleet: metrics and status reports of `run`, `serve`, `status --server` -------------------------


class _MeteredReconciler(reconciler.Reconciler):
    """The reconciler, with each pass's duration in `nodeagent_reconcile_duration_seconds`."""

    def run_once(self) -> float | None:
        with metrics.RECONCILE_SECONDS.time():
            return super().run_once()


def node_report(
    a: agent_mod.Agent, result: agent_mod.PassResult, mode: str = fleet.MODE_AGENT
) -> dict[str, Any]:
    """What `run` (mode agent) and `sync` (mode sync) report to the status server: the node and its
    `status -o json` document."""
    return {
        **a.node.to_json(),
        "status": status_json(a, result),
        "agentVersion": nodeagent.__version__,
        "mode": mode,
        "errors": [e.render() for e in result.desired.errors],
        "events": [e.to_json() for e in events.recent(events.load(a.settings.state_dir), REPORT_EVENTS)],
    }


def _status_line(result: agent_mod.PassResult, doc: dict[str, Any]) -> str:
    """systemd's STATUS=: pods running, pods failing (backoff, failed actions, Failed phase), sources."""
    pods = [p for d in doc["status"]["daemonSets"] for p in d["pods"]] + doc["status"]["staticPods"]
    failing = {w.pod for w in result.plan.waiting if not w.busy} | {o.action.pod for o in result.failed}
    failing |= {p["name"] for p in pods if p["phase"] == "Failed"}
    return sd.summary(
        running=sum(1 for p in pods if p["phase"] == "Running"),
        failing=len(failing),
        source_errors=len({e.file for e in result.desired.errors}),
        pending_sources=len(result.desired.pending_sources),
    )


def _record_metrics(result: agent_mod.PassResult, doc: dict[str, Any]) -> None:
    metrics.record_actions((o.action.verb, o.ok) for o in result.outcomes)
    phases: dict[str, int] = {}
    for p in [p for d in doc["status"]["daemonSets"] for p in d["pods"]] + doc["status"]["staticPods"]:
        phases[p["phase"]] = phases.get(p["phase"], 0) + 1
    metrics.set_pods(phases)
    kubestate.set_status(doc["status"])  # kube-state-metrics series on the agent's /metrics


def _default_serve_state_dir() -> str:
    """/var/lib/nodeagent-serve when it can be used; otherwise rollouts live in memory only (a restarted
    serve then starts them over), said loudly, rather than refusing to serve."""
    from nodeagent.fleet import store

    try:
        os.makedirs(store.DEFAULT_STATE_DIR, mode=0o700, exist_ok=True)
        if os.access(store.DEFAULT_STATE_DIR, os.W_OK):
            return store.DEFAULT_STATE_DIR
    except OSError:
        pass
    print(
        f"nodeagent serve: warning: cannot use {store.DEFAULT_STATE_DIR}; rollout state is kept in memory "
        "only (pass --state-dir DIR to keep it across restarts)",
        file=sys.stderr,
    )
    return ":memory:"


def cmd_serve(args: argparse.Namespace) -> int:
    """`nodeagent serve`: in the foreground until SIGTERM/SIGINT."""
    from nodeagent.fleet import serve

    cfg = serve.ServeConfig(
        directory=args.dir,
        listen=args.listen,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key or args.tls_cert,
        token_file=args.token_file,
        client_ca=args.client_ca,
        node_tokens=args.node_tokens,
        grace=args.grace,
        signing_key=args.signing_key,
        node_expiry=args.node_expiry,
        max_nodes=args.max_nodes,
        max_report=args.max_report_bytes,
        max_connections=args.max_connections,
        state_dir=args.state_dir or _default_serve_state_dir(),
    )
    try:
        server = serve.Server(cfg)
    except (ValueError, OSError, errors.ConfigError) as exc:
        print(f"nodeagent serve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    warning = server.unprotected_warning()
    if warning:
        bar = "!" * 78
        print(f"{bar}\nWARNING: {warning}\n{bar}", file=sys.stderr)
    done = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    server.start()
    print(f"serving {server.publisher.directory} at {server.url}/manifests", file=sys.stderr)
    done.wait()
    server.stop()
    return EXIT_OK


def cmd_fleet_status(
    url: str,
    output: str,
    out: TextIO,
    token_file: str | None,
    ca_file: str | None,
    *,
    client_cert: str | None = None,
    client_key: str | None = None,
) -> int:
    """`status --server URL`: the fleet, like `kubectl get ds -A` and `kubectl get nodes`."""
    from nodeagent.sources import http

    try:
        ctx = http.ssl_context(ca_file, client_cert, client_key) if url.startswith("https:") else None
        doc = http.get_json(url.rstrip("/") + "/api/fleet", headers=http.bearer(token_file), context=ctx)
    except http.FetchError as exc:
        print(f"nodeagent: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if output == "json":
        out.write(json.dumps(doc, indent=2) + "\n")
        return EXIT_OK
    try:
        print_fleet(doc, out)
    except (KeyError, TypeError, ValueError, AttributeError):
        print(f"nodeagent: {url}: the fleet document has an unexpected shape", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_node_delete(args: argparse.Namespace) -> int:
    """`node delete NAME --server URL`: the server forgets the node (DELETE /nodes/NAME)."""
    from urllib.parse import quote

    from nodeagent.sources import http

    url = args.server.rstrip("/") + "/nodes/" + quote(args.name, safe="")
    try:
        ctx = (
            http.ssl_context(args.ca_file, args.client_cert, args.client_key)
            if url.startswith("https:")
            else None
        )
        resp = http.request("DELETE", url, headers=http.bearer(args.token_file), context=ctx)
    except http.FetchError as exc:
        print(f"nodeagent: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if resp.status == 404:
        print(f"nodeagent: node {_clean(args.name)} is not known to {http.display_url(url)}", file=sys.stderr)
        return EXIT_FAILED
    if not 200 <= resp.status < 300:
        why = _clean(resp.body[:200].decode("utf-8", "replace").strip())
        print(f"nodeagent: {http.display_url(url)}: HTTP {resp.status} {why}", file=sys.stderr)
        return EXIT_FAILED
    print(f"node {_clean(args.name)} deleted")
    return EXIT_OK


def _stuck(source: object) -> model.Problem | None:
    stuck = getattr(source, "stuck_problem", None)
    return stuck() if callable(stuck) else None


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _clean(text: object) -> str:
    """Remote text made safe for a terminal: control characters (escape sequences) become `?`."""
    return _CONTROL.sub("?", str(text))


def print_fleet(doc: dict[str, Any], out: TextIO) -> None:
    head = ["NAMESPACE", "NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "MISSCHEDULED"]
    keys = (
        "desiredNumberScheduled",
        "currentNumberScheduled",
        "numberReady",
        "updatedNumberScheduled",
        "numberAvailable",
        "numberMisscheduled",
    )
    rows = [[*head, *rollout_view.ROLLOUT_HEADERS]] + [
        [
            d["namespace"],
            d["name"],
            *(str(d.get(k, 0)) for k in keys),
            *map(_clean, rollout_view.rollout_cells(d)),
        ]
        for d in doc["daemonSets"]
    ]
    if len(rows) > 1:
        _table(rows, out)
    else:
        out.write("No DaemonSets.\n")
    out.write("\n")
    nrows = [["NAME", "STATUS", "TAINTS", "LAST SEEN", "PODS", "VERSION"]]
    for n in doc["nodes"]:
        taints = ",".join(f"{t.get('key')}:{t.get('effect')}" for t in n.get("taints", [])) or "<none>"
        seen = status.age(float(n.get("lastSeenSecondsAgo", 0)))
        if n.get("mode") == fleet.MODE_SYNC:
            seen = f"last synced {seen} ago"  # no agent runs there: it reports when it is synced
        ready = "Ready" if n["ready"] else "NotReady"
        nrows.append([n["name"], ready, taints, seen, str(n.get("pods", 0)), n.get("agentVersion", "")])
    if len(nrows) > 1:
        _table(nrows, out)
    else:
        out.write("No nodes have reported.\n")
    for e in doc.get("errors", []):
        where = e["file"] + (f"#{e['document']}" if e.get("document") is not None else "")
        line = f"error: {where}: {e['path'] + ': ' if e.get('path') else ''}{e['message']}"
        out.write(_clean(line) + "\n")
