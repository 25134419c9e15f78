"""The operator's commands, shaped like their kubectl counterparts: `events`, `describe`, `logs`.

`cli.parser` registers them (`add_parsers`) and `cli.main` hands them over (`main`); each command reads
what the agent leaves behind (stateDir/events.json, the containers on the engine, a dry-run plan), so
they work while `nodeagent run` is running, and without it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, BinaryIO, TextIO

from nodeagent import errors, settings
from nodeagent import runtime as rt
from nodeagent.agent import describe, events, identity, plan, status
from nodeagent.cli import common, views
from nodeagent.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from nodeagent.sources import http

COMMANDS = ("events", "describe", "logs")
WATCH_INTERVAL = 1.0
_KINDS = {
    "pod": "Pod",
    "pods": "Pod",
    "po": "Pod",
    "ds": "DaemonSet",
    "daemonset": "DaemonSet",
    "daemonsets": "DaemonSet",
}


class OpsError(errors.NodeAgentError):
    """A command cannot do what was asked; the message is kubectl's where kubectl has one."""


def add_parsers(sub: Any) -> None:
    ev = sub.add_parser("events", help="recent events of this node, or of the fleet (kubectl get events)")
    ev.add_argument("-w", "--watch", action="store_true", help="after listing, print events as they change")
    ev.add_argument(
        "--for", dest="for_object", metavar="KIND/NAMESPACE/NAME", help="only this object's events"
    )
    ev.add_argument("-o", "--output", default="table", choices=("table", "json"))
    ev.add_argument(
        "--server", metavar="URL", help="the fleet's events from this `nodeagent serve`, newest first"
    )
    ev.add_argument("--token-file", help="bearer token for --server")
    ev.add_argument("--ca-file", help="CA bundle to verify an https --server")

    de = sub.add_parser("describe", help="a pod or DaemonSet in detail, with its events (kubectl describe)")
    de.add_argument("kind", choices=sorted(_KINDS))
    de.add_argument("name", metavar="NAMESPACE/NAME")

    lg = sub.add_parser("logs", help="a container's logs (kubectl logs)")
    lg.add_argument("pod", metavar="NAMESPACE/POD")
    lg.add_argument("-c", "--container", help="the container (required when the pod has several)")
    lg.add_argument("-f", "--follow", action="store_true", help="stream until the container stops")
    lg.add_argument("-p", "--previous", action="store_true", help="the last terminated attempt's logs")
    lg.add_argument("--tail", type=int, default=-1, help="lines from the end (default: all)")
    lg.add_argument("--since", metavar="DURATION", help="only newer than this (5s, 2m, 3h)")
    lg.add_argument("--timestamps", action="store_true", help="prefix each line with its RFC 3339 time")


def main(args: argparse.Namespace) -> int:
    try:
        if args.command == "events" and args.server:
            return cmd_events(None, args, sys.stdout)
        cfg = settings.load(args.config or settings.default_config_path())
        if args.command == "events":
            return cmd_events(cfg.state_dir, args, sys.stdout)
        if args.command == "describe":
            return cmd_describe(cfg, _KINDS[args.kind], args.name, sys.stdout)
        if args.command == "logs":
            return cmd_logs(cfg, args, sys.stdout.buffer)
    except OpsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_OK
    return EXIT_USAGE


def _ns_name(text: str) -> tuple[str, str]:
    key = common.ns_name(text)
    if key is None:
        raise OpsError(f"expected NAMESPACE/NAME, got {text!r}")
    return key


def _table(rows: list[list[str]], out: TextIO) -> None:
    views.table(rows, out, clean_cells=False)  # as before the split: event messages are printed as recorded


# --- events -----------------------------------------------------------------------------------------


def parse_for(text: str | None) -> tuple[str, str, str] | None:
    """`--for pod/kube-system/agent-node-a` -> (Pod, kube-system, agent-node-a)."""
    if not text:
        return None
    parts = text.split("/")
    if len(parts) != 3 or not all(parts) or parts[0].lower() not in _KINDS:
        raise OpsError(f"--for expects KIND/NAMESPACE/NAME with KIND pod or ds, got {text!r}")
    return _KINDS[parts[0].lower()], parts[1], parts[2]


def last_seen(e: events.Event, now: float) -> str:
    """kubectl get events' LAST SEEN: `5s`, or `5s (x3 over 2m)` for a repeated event."""
    seen = status.age(now - e.last_timestamp)
    return f"{seen} (x{e.count} over {status.age(now - e.first_timestamp)})" if e.count > 1 else seen


def event_rows(evs: Iterable[events.Event], now: float, with_node: bool = False) -> list[list[str]]:
    rows = []
    for e in evs:
        row = [e.involved.namespace, last_seen(e, now), e.type, e.reason, e.involved.text()]
        rows.append([*row, e.source_host, e.message] if with_node else [*row, e.message])
    return rows


EVENT_HEADER = ["NAMESPACE", "LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
FLEET_HEADER = ["NAMESPACE", "LAST SEEN", "TYPE", "REASON", "OBJECT", "NODE", "MESSAGE"]


def _select(evs: Iterable[events.Event], target: tuple[str, str, str] | None) -> list[events.Event]:
    return [e for e in evs if target is None or e.involved.matches(*target)]


def cmd_events(
    state_dir: str | None,
    args: argparse.Namespace,
    out: TextIO,
    clock: Callable[[], float] = time.time,
    keep_watching: Callable[[], bool] = lambda: True,
) -> int:
    """This node's events (stateDir), oldest first as kubectl lists them, or (`state_dir` None: --server)
    the fleet's as serve has them from node reports, newest first; -w then prints each new or repeated one."""
    target = parse_for(args.for_object)

    def fetch() -> list[events.Event]:
        if state_dir is None:
            return _select(fetch_fleet_events(args.server, args.token_file, args.ca_file), target)
        return _select(events.load(state_dir), target)

    return _list_events(fetch, args, out, clock, keep_watching, fleet=state_dir is None)


def _list_events(
    fetch: Callable[[], list[events.Event]],
    args: argparse.Namespace,
    out: TextIO,
    clock: Callable[[], float],
    keep_watching: Callable[[], bool],
    *,
    fleet: bool = False,
) -> int:
    """`events` for one node or (`fleet`, with a NODE column) the fleet: a table or an EventList, or with
    `-w` one JSON line an event, then each new or repeated event as it comes."""
    evs = fetch()
    if args.output == "json":
        if not args.watch:
            out.write(json.dumps({"kind": "EventList", "items": [e.to_json() for e in evs]}, indent=2) + "\n")
        else:
            for e in evs:
                out.write(json.dumps(e.to_json()) + "\n")
    elif evs or args.watch:
        _table([FLEET_HEADER if fleet else EVENT_HEADER, *event_rows(evs, clock(), with_node=fleet)], out)
    else:
        out.write("No events found.\n")
    out.flush()
    if args.watch:
        _watch(fetch, evs, args.output, out, clock, keep_watching, fleet=fleet)
    return EXIT_OK


def _watch(
    fetch: Callable[[], list[events.Event]],
    listed: list[events.Event],
    output: str,
    out: TextIO,
    clock: Callable[[], float],
    keep_watching: Callable[[], bool],
    *,
    fleet: bool = False,
) -> None:
    """`-w`: print each event that is new or repeated since the last look (the fleet's come newest first
    and are printed oldest first)."""
    seen = {e.key: e.count for e in listed}
    while keep_watching():
        time.sleep(WATCH_INTERVAL * 2 if fleet else WATCH_INTERVAL)
        fresh = [e for e in fetch() if seen.get(e.key) != e.count]
        for e in reversed(fresh) if fleet else fresh:
            seen[e.key] = e.count
            row = event_rows([e], clock(), with_node=fleet)[0]
            line = json.dumps(e.to_json()) if output == "json" else "   ".join(row)
            out.write(line + "\n")
        out.flush()


def fetch_fleet_events(url: str, token_file: str | None, ca_file: str | None) -> list[events.Event]:
    try:
        doc = common.server_get(url, "/api/events", token_file, ca_file)
    except http.FetchError as exc:
        raise OpsError(str(exc)) from exc
    items = doc.get("items") if isinstance(doc, dict) else None
    return [events.Event.from_json(i) for i in items or [] if isinstance(i, dict)]


# --- logs --------------------------------------------------------------------------------------------


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration as kubectl's --since takes it (`5s`, `2m`, `1h30m`)."""
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if not text or pos != len(text):
        raise OpsError(f'invalid argument "{text}" for "--since" flag: time: invalid duration "{text}"')
    return total


def _cname(c: rt.ObservedContainer) -> str:
    return c.labels.get(identity.LABEL_CONTAINER_NAME, "")


def log_target(
    observed: Iterable[rt.ObservedContainer], namespace: str, pod: str, container: str | None, previous: bool
) -> rt.ObservedContainer:
    """The container `kubectl logs` would read (kubelet's validateContainerLogStatus): the current attempt,
    or with `previous` the last terminated one (a crashed current attempt that waits for its restart is
    that one, as the kubelet's lastState shows it)."""
    mine = [
        c
        for c in observed
        if c.labels.get(identity.LABEL_POD_NAMESPACE) == namespace
        and c.labels.get(identity.LABEL_POD_NAME) == pod
        and c.labels.get(identity.LABEL_ROLE) != identity.ROLE_SANDBOX
    ]
    if not mine:
        raise OpsError(f'pods "{pod}" not found')
    apps = sorted({_cname(c) for c in mine if c.labels.get(identity.LABEL_ROLE) != identity.ROLE_INIT})
    inits = sorted({_cname(c) for c in mine if c.labels.get(identity.LABEL_ROLE) == identity.ROLE_INIT})
    if not container:
        if len(apps) != 1:
            choices = f"choose one of: [{' '.join(apps)}]"
            if inits:
                choices += f" or one of the init containers: [{' '.join(inits)}]"
            raise OpsError(f"a container name must be specified for pod {pod}, {choices}")
        container = apps[0]
    attempts = sorted(
        (c for c in mine if _cname(c) == container), key=lambda c: (plan.attempt_of(c), c.created_at)
    )
    if not attempts:
        raise OpsError(f"container {container} is not valid for pod {pod}")
    current = attempts[-1]
    if not previous:
        return current
    if current.state in ("exited", "dead"):
        return current
    dead = [c for c in attempts[:-1] if not c.running]
    if not dead:
        raise OpsError(f'previous terminated container "{container}" in pod "{pod}" not found')
    return dead[-1]


def cmd_logs(cfg: settings.Settings, args: argparse.Namespace, out: BinaryIO) -> int:
    namespace, pod = _ns_name(args.pod)
    runtime = common.runtime(cfg)
    if runtime is None:
        raise OpsError("the Docker engine does not answer")
    since = time.time() - parse_duration(args.since) if args.since else None
    target = log_target(runtime.list_managed(), namespace, pod, args.container, args.previous)
    stream = runtime.logs(
        target.id,
        follow=args.follow and not args.previous,
        tail=None if args.tail < 0 else args.tail,
        since=since,
        timestamps=args.timestamps,
    )
    try:
        for chunk in stream:
            out.write(chunk)
            out.flush()
    except BrokenPipeError:
        pass
    except errors.NodeAgentError as exc:
        raise OpsError(str(exc)) from exc
    return EXIT_OK


# --- describe -----------------------------------------------------------------------------------------


def _inspects(runtime: rt.ContainerRuntime | None, ids: Iterable[str]) -> dict[str, Any]:
    inspect = getattr(runtime, "inspect", None)
    out: dict[str, Any] = {}
    if inspect is None:
        return out
    for cid in ids:
        try:
            doc = inspect(cid)
        except errors.NodeAgentError:
            continue
        if isinstance(doc, dict):
            out[cid] = doc
    return out


def pod_facts(a: Any, result: Any, namespace: str, name: str) -> describe.PodFacts | None:
    """Find a pod in a dry-run pass: a DaemonSet's, a static pod, or an orphan; None when none is."""
    p: plan.Plan = result.plan
    now = a.clock()
    key = (namespace, name)
    found: tuple[plan.DesiredPod | None, plan.ObservedPod | None, status.PodStatus | None] | None = None
    for d in p.daemonsets:
        obs = next((x for x in d.pods if x.key == key), None)
        if d.desired.key == key or obs is not None:
            st = status.daemonset_status(d, p.waiting, now, p.readiness)
            ps = next((x for x in st.pods if (x.namespace, x.name) == key), None)
            found = (d.desired if d.desired.key == key or obs is None else _outdated(d.desired, obs), obs, ps)
            break
    for s in p.static_pods if found is None else ():
        obs = next((x for x in s.pods if x.key == key), None)
        if s.desired.key == key or obs is not None:
            ps = next(
                (
                    x
                    for x in status.static_pod_status(s, p.waiting, p.readiness)
                    if (x.namespace, x.name) == key
                ),
                None,
            )
            found = (s.desired, obs, ps)
            break
    for o in p.orphans if found is None else ():
        if o.key == key:
            found = (None, o, status.pod_status(o, "", p.waiting, p.readiness))
    if found is None:
        return None
    desired, obs, ps = found
    wait = next((w for w in p.waiting if (w.namespace, w.pod) == key and not w.container), None)
    failure = a.failures.get(key)
    ids = [c.id for c in (*obs.containers, *obs.init_containers, *obs.stale)] if obs else []
    pod_ip = ""
    container_ip = getattr(a.runtime, "container_ip", None)
    if obs is not None and obs.sandbox is not None and container_ip is not None:
        try:
            pod_ip = str(container_ip(obs.sandbox.id))
        except errors.NodeAgentError:
            pod_ip = ""
    return describe.PodFacts(
        desired=desired,
        observed=obs,
        status=ps,
        node_name=a.node.name,
        host_ip=a.host.host_ip,
        pod_ip=pod_ip,
        inspects=_inspects(a.runtime, ids),
        events=events.for_object(events.load(a.settings.state_dir), "Pod", namespace, name),
        waiting_reason=wait.reason if wait else "",
        waiting_message=failure.message if failure is not None and wait is not None else "",
    )


def _outdated(desired: plan.DesiredPod, obs: plan.ObservedPod) -> plan.DesiredPod:
    """An outdated pod of a DaemonSet is shown with the current template (its old one is not kept)."""
    return plan.DesiredPod(
        owner=desired.owner,
        namespace=obs.namespace,
        name=obs.name,
        template=desired.template,
        spec_hash=obs.spec_hash,
        source=desired.source,
    )


def cmd_describe(cfg: settings.Settings, kind: str, text: str, out: TextIO) -> int:
    namespace, name = _ns_name(text)
    a = common.one_shot_agent(cfg)
    result = a.reconcile(dry_run=True)
    now = a.clock()
    if kind == "Pod":
        facts = pod_facts(a, result, namespace, name)
        if facts is None:
            raise OpsError(f'pods "{name}" not found')
        out.write(describe.describe_pod(facts, now))
        return EXIT_OK
    entry = result.desired.daemonsets.get((namespace, name))
    dplan = next((d for d in result.plan.daemonsets if (d.namespace, d.name) == (namespace, name)), None)
    if entry is None or dplan is None:
        raise OpsError(f'daemonsets.apps "{name}" not found')
    st = status.daemonset_status(dplan, result.plan.waiting, now, result.plan.readiness)
    evs = events.for_object(events.load(cfg.state_dir), "DaemonSet", namespace, name)
    out.write(describe.describe_ds(entry.obj, st, dplan.decision, evs, now))
    return EXIT_OK
