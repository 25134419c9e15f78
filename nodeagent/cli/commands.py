"""The one-shot commands: read the arguments, call the agent or the fleet, print a view, return an exit
code. `run` is in `cli.daemon`; events, describe and logs in `cli.ops`."""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any, TextIO
from urllib.parse import quote

from nodeagent import atomicfile, errors, settings
from nodeagent.agent import agent as agent_mod
from nodeagent.agent import events, execute, identity, plan, statefiles
from nodeagent.cli import common, views
from nodeagent.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from nodeagent.fleet import annotations as rollout_annotations
from nodeagent.fleet import report, serve, store
from nodeagent.k8s import manifests, model, policy
from nodeagent.sources import http, signing

SERVE_GC_THRESHOLD = 20_000  # serve's young-generation threshold (Python's default is 700): see settle_heap

# --- validate, sign ----------------------------------------------------------------------------------


def cmd_validate(paths: Sequence[str], output: str, out: TextIO, level: str = "privileged") -> int:
    result = rollout_annotations.check(manifests.load_paths(paths))  # the nodeagent.io/* rollout annotations
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
            "errors": [p.to_json() for p in result.errors],
            "warnings": [p.to_json() for p in result.warnings],
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


def cmd_sign(file: str, key_file: str, output: str | None, trusted_comment: str | None) -> int:
    """`nodeagent sign FILE --key K`: FILE.minisig, as `minisign -S -s K -m FILE` writes it."""
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
    atomicfile.write(target, sig, mode=0o644)  # a signature is public: served beside the bundle
    print(f"wrote {target} (key {key.id_hex})", file=sys.stderr)
    return EXIT_OK


# --- plan, sync, status --------------------------------------------------------------------------


def cmd_plan(cfg: settings.Settings, output: str, out: TextIO) -> int:
    a = common.one_shot_agent(cfg)
    return _show(a, a.reconcile(dry_run=True), output, out, views.plan_json, views.print_plan)


def _show(
    a: agent_mod.Agent,
    result: agent_mod.PassResult,
    output: str,
    out: TextIO,
    document: Callable[[agent_mod.Agent, agent_mod.PassResult], dict[str, Any]],
    print_table: Callable[[agent_mod.Agent, agent_mod.PassResult, TextIO], None],
) -> int:
    """A pass shown as `-o json` asks (its document) or as a table."""
    if output == "json":
        out.write(json.dumps(document(a, result), indent=2) + "\n")
    else:
        print_table(a, result, out)
    return EXIT_OK


def cmd_sync(cfg: settings.Settings, dry_run: bool, output: str, out: TextIO) -> int:
    a = common.one_shot_agent(cfg)
    if a.runtime is None and not dry_run:
        print("nodeagent: the Docker engine does not answer; nothing was done", file=sys.stderr)
        return EXIT_FAILED
    result = a.reconcile(dry_run=dry_run)
    if output == "json":
        out.write(json.dumps(views.sync_json(a, result, dry_run), indent=2) + "\n")
    else:
        views.print_sync(a, result, dry_run, out)
    if cfg.status_server and not dry_run:
        report.report_sync(cfg, a, result)
    return EXIT_FAILED if result.failed else EXIT_OK


def cmd_status(cfg: settings.Settings, output: str, out: TextIO) -> int:
    a = common.one_shot_agent(cfg)
    if a.runtime is None:
        print("nodeagent: the Docker engine does not answer", file=sys.stderr)
        return EXIT_FAILED
    return _show(a, a.reconcile(dry_run=True), output, out, report.status_json, views.print_status)


# --- orphan, delete pod ------------------------------------------------------------------------------


def _key(text: str) -> tuple[str, str] | None:
    key = common.ns_name(text)
    if key is None:
        print(f"nodeagent: expected NAMESPACE/NAME, got {text!r}", file=sys.stderr)
    return key


def cmd_orphan(cfg: settings.Settings, daemonset: str, undo: bool, out: TextIO) -> int:
    """Record that this DaemonSet's pods outlive its withdrawal (stateDir/ownership.json).

    Works before the file is removed, or after (while the pods still run because not every source has
    spoken, or the agent is stopped); a running agent reads it on its next pass.
    """
    key = _key(daemonset)
    if key is None:
        return EXIT_USAGE
    owner = identity.owner_daemonset(*key)
    current = statefiles.load_ownership(cfg.state_dir)
    requests = dict(current.policy)
    if undo:
        requests.pop(owner, None)
    else:
        requests[owner] = plan.POLICY_COMMAND
    statefiles.save_ownership(cfg.state_dir, plan.Ownership(policy=requests, owners=current.owners))
    verb = "no longer orphans" if undo else "orphans"
    out.write(f"DaemonSet {key[0]}/{key[1]} {verb} its pods when it is withdrawn\n")
    return EXIT_OK


def cmd_delete_pod(cfg: settings.Settings, pod: str, out: TextIO) -> int:
    """`kubectl delete pod`: stop (with the pod's grace period) and remove every container of the pod.

    Its DaemonSet, if any, then creates its current revision (that is how OnDelete updates a pod); an
    orphaned pod is simply gone.
    """
    key = _key(pod)
    if key is None:
        return EXIT_USAGE
    runtime = common.runtime(cfg)
    if runtime is None:
        print("nodeagent: the Docker engine does not answer", file=sys.stderr)
        return EXIT_FAILED
    found = plan.group_pods(runtime.list_managed()).get(key)
    if found is None:
        print(f"nodeagent: pod {key[0]}/{key[1]} not found on this node", file=sys.stderr)
        return EXIT_FAILED
    action = plan.delete_action(found, "deleted by `nodeagent delete pod`")
    host = execute.HostInfo(node_name=common.node_name(cfg), host_ip="", state_dir=cfg.state_dir)
    [outcome] = execute.Executor(runtime, host).apply([action])
    events.record_outcomes(cfg.state_dir, [outcome], host.node_name)
    if not outcome.ok:
        print(f"nodeagent: {outcome.message}", file=sys.stderr)
        return EXIT_FAILED
    out.write(f"pod {key[0]}/{key[1]} deleted\n")
    return EXIT_OK


# --- the fleet: serve, status --server, node delete ---------------------------------------------------


def _default_serve_state_dir() -> str:
    """/var/lib/nodeagent-serve when it can be used; otherwise rollouts live in memory only (a restarted
    serve then starts them over), said loudly, rather than refusing to serve."""
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


def settle_heap() -> None:
    """Once serve has started. What exists now (modules, the first bundle, the controller's state) lives
    as long as serve: frozen out of the collector, a full collection walks only what came later (at
    1000 nodes one held every request for up to half a second before). Then a young collection every
    SERVE_GC_THRESHOLD allocations instead of 700: at 5000 nodes (two replicas, about 330 requests a
    second each) collections took a tenth of a replica's CPU and full ones 0.2-0.5 s each; with it none
    ran in the bench's window, and in one run CPU fell from 22-24 % to 18-19 % of a core and the p99
    in serve from 8 ms to 2 ms, at the same peak RSS. Cycles are still collected, only later."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(SERVE_GC_THRESHOLD, 10, 10)


def cmd_serve(args: argparse.Namespace) -> int:
    """`nodeagent serve`: in the foreground until SIGTERM/SIGINT."""
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
        state_dir=args.state_dir
        or (":memory:" if args.store else _default_serve_state_dir()),  # --store: unused
        store_url=args.store,
        replica_id=args.replica_id,
    )
    try:
        server = serve.Server(cfg)
    except (ValueError, OSError, errors.ConfigError, store.StoreError) as exc:
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
    settle_heap()
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
    try:
        doc = common.server_get(url, "/api/fleet", token_file, ca_file, client_cert, client_key)
    except http.FetchError as exc:
        print(f"nodeagent: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if output == "json":
        out.write(json.dumps(doc, indent=2) + "\n")
        return EXIT_OK
    try:
        views.print_fleet(doc, out)
    except (KeyError, TypeError, ValueError, AttributeError):
        print(f"nodeagent: {url}: the fleet document has an unexpected shape", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_node_delete(args: argparse.Namespace) -> int:
    """`node delete NAME --server URL`: the server forgets the node (DELETE /nodes/NAME)."""
    url = args.server.rstrip("/") + "/nodes/" + quote(args.name, safe="")
    try:
        ctx = common.server_context(url, args.ca_file, args.client_cert, args.client_key)
        resp = http.request("DELETE", url, headers=http.bearer(args.token_file), context=ctx)
    except http.FetchError as exc:
        print(f"nodeagent: {exc}", file=sys.stderr)
        return EXIT_FAILED
    name = views.clean(args.name)
    if resp.status == 404:
        print(f"nodeagent: node {name} is not known to {http.display_url(url)}", file=sys.stderr)
        return EXIT_FAILED
    if not 200 <= resp.status < 300:
        why = views.clean(resp.body[:200].decode("utf-8", "replace").strip())
        print(f"nodeagent: {http.display_url(url)}: HTTP {resp.status} {why}", file=sys.stderr)
        return EXIT_FAILED
    print(f"node {name} deleted")
    return EXIT_OK
