"""The command line (argparse only): every command's arguments and help.

A command group living in its own module registers its subcommands with one line here
(`ops.add_parsers(sub)`), and `cli.main` hands its commands to that module.
"""

from __future__ import annotations

import argparse
from typing import Any

from nodeagent.cli import ops, rollout
from nodeagent.service import logs


def build() -> argparse.ArgumentParser:
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
    _node_commands(sub)
    _fleet_commands(sub)
    _ownership_commands(sub)
    ops.add_parsers(sub)  # events, describe, logs
    rollout.add_parser(sub)  # rollout status|history|undo|pause|resume|restart|plan
    sub.add_parser("version", help="print the version")
    return p


def _node_commands(sub: Any) -> None:
    """What reads or runs this node: validate, plan, sync, run, status."""
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
    _server_client(st, "for a --server that requires mTLS")


def _ownership_commands(sub: Any) -> None:
    """What changes a pod's owner or removes a pod on this node: orphan, delete."""
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


def _server_client(p: argparse.ArgumentParser, mtls: str) -> None:
    """The credentials a client of `nodeagent serve` presents."""
    p.add_argument("--token-file", help="bearer token for --server")
    p.add_argument("--ca-file", help="CA bundle to verify an https --server")
    p.add_argument("--client-cert", help=f"client certificate (PEM) {mtls}")
    p.add_argument("--client-key", help="the client certificate's key (PEM)")


def _fleet_commands(sub: Any) -> None:
    """The fleet side: serve, node, sign."""
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
    sv.add_argument(  # replicas: fleet/replicas.py
        "--store",
        metavar="URL",
        help="the rollout store: sqlite:///DIR (default: --state-dir) or postgresql://USER@HOST/DB, shared "
        "by several serve replicas (one leads rollouts; agents list them all)",
    )
    sv.add_argument("--replica-id", help="this replica's name in /healthz and /metrics (default HOST:PID)")
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
    _server_client(nd_del, "for mTLS")

    sg = sub.add_parser("sign", help="sign a bundle with a minisign key: writes FILE.minisig")
    sg.add_argument("file", metavar="FILE")
    sg.add_argument("--key", required=True, metavar="K", help="minisign secret key without a password")
    sg.add_argument("--output", metavar="SIG", help="where to write the signature (default: FILE.minisig)")
    sg.add_argument("--trusted-comment", help="signed comment (default: timestamp and file name)")
