"""Hollow nodes (a simulation, like kubemark's): many nodeagents in one process against one `serve`.

Each simulated node is the real agent code: `agent.Agent` with its real `HttpSource` (conditional
polls, long-poll watch, cache in its stateDir), the desired-state merger, the planner and the
executor, and the real status `Reporter.post` sending `report.node_report` documents; only the container
engine is replaced by `runtime.memory.MemoryRuntime`, and responses' headers are parsed without the
email package (`lean_parse_headers`: the same lines, read by http.client's own reader). Unlike
`nodeagent run`, passes and reports run on small shared pools (one Reconciler and one Reporter thread
per node would be 2000 threads fighting over one GIL on two cores: the simulation would measure
itself), and the 30 s resync timer is left out (a resync pass makes no request to the server).

Run by `bench.py` (several processes of a few hundred nodes each: fewer threads fight over one GIL);
talks JSON lines: stdout gets `ready`, `complete` (a DaemonSet has reached every node's source,
`what: received`, or its pod has started on every node, `what: started`) and `stats` events; a
`stats` line on stdin asks for the stats; EOF on stdin ends it.

With `--rollout-events` (the rollout bench), every node also says when a DaemonSet's image reached it
(`got`), when its pod of that image became available (`available`) and when the report saying so was
sent (`reported`, once `serve` took it: the simulation's own queue for report threads left out), and a
node whose pod is ready but not yet past minReadySeconds passes again `--repass` seconds later (no
resync timer here): a simulated node reports its new pod available shortly after it started, as a real
one does. A `got` event also carries `arrived`: when the kernel received the watch answer that brought
the revision (`ArrivalSocket`), which is when `serve` sent it. On two busy cores a hollow node may wait
seconds for its process's interpreter lock before it can read the answer and look at the clock; a real
node has a CPU of its own, so that wait is the simulation's, not `serve`'s.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import http.client as http_client
import json
import queue
import socket
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs, urlsplit

from nodeagent import settings
from nodeagent.agent import agent, identity
from nodeagent.fleet import report
from nodeagent.k8s import manifests, model
from nodeagent.runtime import memory
from nodeagent.service import logs
from nodeagent.sources import http, httpclient

IMAGE = "registry.example/fleet/app:1"
IMAGE_V2 = "registry.example/fleet/app:2"  # the rollout bench's new revision
_out_lock = threading.Lock()


def emit(doc: Mapping[str, Any]) -> None:
    with _out_lock:
        sys.stdout.write(json.dumps(doc) + "\n")
        sys.stdout.flush()


def shared_parses(
    load_text: Callable[[str | bytes, str], model.LoadResult],
) -> Callable[[str | bytes, str], model.LoadResult]:
    """`manifests.load_text` remembered for the last few (body, source) pairs: a bundle every node of
    the process received parses once (its result is frozen dataclasses: safe to share)."""
    memo: dict[tuple[str | bytes, str], model.LoadResult] = {}
    lock = threading.Lock()

    def load(text: str | bytes, source: str) -> model.LoadResult:
        with lock:
            got = memo.get((text, source))
        if got is None:
            got = load_text(text, source)
            with lock:
                if len(memo) >= 16:
                    memo.clear()
                memo[(text, source)] = got
        return got

    return load


def lean_parse_headers(fp: Any, _class: type = http_client.HTTPMessage) -> http_client.HTTPMessage:
    """http.client's `parse_headers` without the email package (a third of a hollow node's CPU): the
    simulation's nodes share two cores with serve, and their own parsing showed as serve's latency.
    The lines are read by http.client's own `_read_headers` (its limits); only the parse is lean."""
    pairs: list[tuple[str, str]] = []
    for raw in http_client._read_headers(fp):  # type: ignore[attr-defined]
        line = raw.decode("iso-8859-1").rstrip("\r\n")
        if line[:1] in (" ", "\t") and pairs:  # a folded line continues the previous header
            pairs[-1] = (pairs[-1][0], f"{pairs[-1][1]} {line.strip()}")
        elif ":" in line:
            name, value = line.split(":", 1)
            pairs.append((name.strip(), value.strip()))
    return LeanHeaders(pairs)


class LeanHeaders(http_client.HTTPMessage):
    """An HTTPMessage over a plain list, answering what http.client and nodeagent's client ask."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__()
        self._headers = pairs
        self._first: dict[str, str] = {}
        for name, value in pairs:
            self._first.setdefault(name.lower(), value)

    def get(self, name: str, failobj: Any = None) -> Any:
        return self._first.get(name.lower(), failobj)

    def __getitem__(self, name: str) -> Any:
        return self._first.get(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._first

    def get_all(self, name: str, failobj: Any = None) -> Any:
        got = [v for k, v in self._headers if k.lower() == name.lower()]
        return got or failobj

    def items(self) -> list[tuple[str, str]]:
        return list(self._headers)


def handout_pairs(handed: list[float], freed: list[float], budget: int) -> list[tuple[float, float]]:
    """(when the (i)th node was handed a revision, when the (i - budget)th slot freed), from the nodes'
    `got` and `available` (or `reported`) event times: with `budget` nodes allowed unavailable, the
    (i)th handout needs the (i - budget)th availability."""
    h, a = sorted(handed), sorted(freed)
    return [(h[i], a[i - budget]) for i in range(budget, min(len(h), len(a) + budget))]


def heartbeat_lag_max(stats: list[dict[str, Any]]) -> float:
    """The longest wait of a heartbeat for a report thread, over `stats` events of several processes."""
    return max((lag for st in stats for lag in st["heartbeat_lags"]), default=0.0)


SO_TIMESTAMP = getattr(socket, "SO_TIMESTAMP", 29)  # Linux's; its control message is a struct timeval
_CMSG_SPACE = socket.CMSG_SPACE(16)
_arrival = threading.local()  # `first`: the kernel's arrival time of the response being read (None: none yet)
ARRIVED: dict[str, float] = {}  # node -> the kernel's arrival time of its latest watch answer with a bundle


class ArrivalSocket(socket.socket):
    """A client socket that notes, per thread, when the kernel received the first bytes of the response
    being read (SO_TIMESTAMP): the moment the server's answer came, however long this thread then waited
    for the interpreter lock. http.client reads a response through `recv_into`."""

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        view = memoryview(buffer).cast("B")
        got, ancillary, _, _ = self.recvmsg_into([view[: nbytes or len(view)]], _CMSG_SPACE, flags)
        if getattr(_arrival, "first", 0.0) is None:
            for level, kind, data in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMP and len(data) >= 16:
                    sec, usec = struct.unpack("qq", data[:16])
                    _arrival.first = sec + usec / 1e6
        return got


def stamped_connect(connect: Callable[[http_client.HTTPConnection], None]) -> Callable[..., None]:
    """http.client's `connect`, whose socket then stamps arrivals (ArrivalSocket). Plain http only: the
    simulation talks to serve over loopback."""

    def wrapped(conn: http_client.HTTPConnection) -> None:
        connect(conn)
        sock = conn.sock
        if type(sock) is not socket.socket:  # TLS, or already stamped
            return
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
        timeout = sock.gettimeout()
        stamped = ArrivalSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())
        stamped.settimeout(timeout)  # the descriptor's blocking mode goes with it
        conn.sock = stamped

    return wrapped


class Timings:
    """Client-side response times of every request the nodes make (a recorder around http.request)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.quick: list[float] = []  # requests the server should answer at once: polls, reports
        self.watch_changed: list[float] = []  # arrival times of watch answers carrying a new bundle
        self.watch_timeouts = 0
        self.errors = 0

    def wrap(self, inner: Callable[..., http.Response]) -> Callable[..., http.Response]:
        def timed(method: str, url: str, **kwargs: Any) -> http.Response:
            t0 = time.monotonic()
            _arrival.first = None
            try:
                resp = inner(method, url, **kwargs)
            except http.FetchError:
                with self.lock:
                    self.errors += 1
                raise
            took = time.monotonic() - t0
            with self.lock:
                if "watch=1" in url:
                    if resp.status == 200:
                        self.watch_changed.append(time.time())
                        node = parse_qs(urlsplit(url).query).get("node", [""])[0]
                        if node and _arrival.first is not None:
                            ARRIVED[node] = _arrival.first
                    else:
                        self.watch_timeouts += 1
                else:
                    self.quick.append(took)
            return resp

        return timed


class Node:
    def __init__(
        self, index: int, url: str, state_root: str, wake: Callable[[int], None], rollout_events: bool = False
    ) -> None:
        self.index = index
        self.rollout_events = rollout_events
        self.got: set[tuple[str, str, str]] = set()  # (owner, image, revision) that reached this node
        self.available: set[tuple[str, str, str]] = set()  # (owner, image, revision) available here
        name = self.name = f"hollow-{index:05d}"
        urls = url.split(",")  # replicas of one serve: each node starts on its own, round robin
        urls = urls[index % len(urls) :] + urls[: index % len(urls)]
        raw = {
            "node": {"name": name, "labels": {"fleet": "sim"}},
            "sources": [{"url": [f"{u}/manifests" for u in urls], "pollInterval": "10s"}],
            "stateDir": f"{state_root}/{name}",
            "statusServer": urls,
        }
        cfg = settings.from_dict(raw, state_root)
        self.runtime = memory.MemoryRuntime(images=[IMAGE, IMAGE_V2], node_name=name)
        self.agent = agent.Agent(cfg, self.runtime, watch=True, on_change=lambda: wake(index))
        self.reporter = report.Reporter(urls, name, auth=report.credentials_for(cfg))
        self.received: dict[str, float] = {}  # owner -> when the bundle naming it reached this node
        self.min_ready: dict[str, int] = {}  # owner -> its DaemonSet's minReadySeconds
        self.started: dict[str, float] = {}  # owner -> when its first container started here
        self.latest: Mapping[str, Any] | None = None
        self.sent: Mapping[str, Any] | None = None
        self.report_lock = threading.Lock()
        self.seq = 0  # passes so far: `latest` is the report of pass `seq`
        self.awaiting: list[tuple[int, dict[str, Any]]] = []  # (pass, "reported" event) not yet posted
        self.heartbeat_due: float | None = None  # a heartbeat queued for the report pool, not yet started
        self.post_lock = threading.Lock()  # one post at a time, as the reporter's one thread
        self.last_post = 0.0  # monotonic time the last post ended (the reporter's waits start there)
        self.change_queued = False  # a report on change waits out MIN_GAP after the last post
        self.settling = False  # `latest` is a pass's that started work (Reporter.update)
        self.settle_wait = False  # the queued post waits for the next pass's report (SETTLE_DELAY)

    def source_changed(self) -> None:
        now = time.time()
        shot = self.agent.sources[0].snapshot()
        for d in shot.documents if shot is not None else ():
            if d.obj.kind == "DaemonSet":
                owner = identity.owner_daemonset(d.obj.metadata.namespace, d.obj.metadata.name)
                self.received.setdefault(owner, now)
                self.min_ready[owner] = d.obj.spec.min_ready_seconds
                if self.rollout_events:
                    image = d.obj.spec.template.spec.containers[0].image
                    rev = identity.spec_hash(d.obj.spec.template)  # revisions may share an image
                    if (owner, image, rev) not in self.got:
                        self.got.add((owner, image, rev))
                        emit(
                            {
                                "event": "got",
                                "node": self.index,
                                "owner": owner,
                                "image": image,
                                "revision": rev,
                                "t": now,
                                "arrived": ARRIVED.get(self.name),  # None: it came by a poll
                            }
                        )

    def reconcile(self) -> bool:
        """One pass; True when a pod is ready but not yet available (worth another pass soon)."""
        result = self.agent.reconcile()
        doc = report.node_report(self.agent, result)
        images: dict[str, set[str]] = {}
        for c in self.runtime.running():
            owner = c.labels.get(identity.LABEL_OWNER, "")
            if owner and owner not in self.started and c.started_at is not None:
                self.started[owner] = c.started_at
            if owner and c.spec.image in (IMAGE, IMAGE_V2):  # not the pod's sandbox
                images.setdefault(owner, set()).add(c.spec.image)
        waiting = False
        events = []
        for ds in doc["status"]["daemonSets"]:
            if ds["numberAvailable"] < ds["currentNumberScheduled"]:
                waiting = True
            owner = identity.owner_daemonset(ds["namespace"], ds["name"])
            running = images.get(owner, set())
            # the report describes the pods seen before the pass acted: only the updated pod, available
            settled = ds["updatedNumberScheduled"] >= 1 and len(ds["pods"]) == 1
            if self.rollout_events and settled and ds["numberAvailable"] >= 1 and len(running) == 1:
                key = (owner, next(iter(running)), str(ds["pods"][0].get("revision", "")))
                if key not in self.available:
                    self.available.add(key)
                    # when it became available: minReadySeconds after it became ready (this pass may
                    # come up to a repass later, and serve judges availability by that clock too)
                    since = ds["pods"][0].get("readySince")
                    became = since + self.min_ready.get(owner, 0) if since is not None else time.time()
                    event = {
                        "event": "available",
                        "node": self.index,
                        "owner": owner,
                        "image": key[1],
                        "revision": key[2],
                        "t": became,
                    }
                    emit(event)
                    events.append({**event, "event": "reported"})
        with self.report_lock:
            # the report and what it says become visible together: a post that takes this report
            # releases its "reported" events (queued after it, a post in between took the report and
            # left them to the next post, up to a heartbeat later)
            self.latest = doc
            self.settling = bool(result.plan.actions)  # this pass started work
            self.seq += 1
            self.awaiting.extend((self.seq, e) for e in events)
        return waiting

    def report(self, heartbeat: bool, lags: list[float] | None = None) -> None:
        """What the Reporter's worker does: post the newest report on change, and as a heartbeat. A
        heartbeat's wait in the shared pool goes to `lags` (a real node's reporter has a thread of its
        own). When the posts come due is Fleet's schedule (`_due`)."""
        with self.post_lock:
            with self.report_lock:
                if heartbeat and self.heartbeat_due is not None:
                    if lags is not None:
                        lags.append(time.monotonic() - self.heartbeat_due)
                    self.heartbeat_due = None
                doc, seq = self.latest, self.seq
                if doc is None or (
                    not heartbeat and not report.worth_posting(doc, self.sent, self.reporter.serve_judges)
                ):
                    return
            sending = time.time()
            ok = self.reporter.post(doc)
            with self.report_lock:
                self.last_post = time.monotonic()
                if ok:
                    self.sent = doc
                    done = [e for s, e in self.awaiting if s <= seq]
                    self.awaiting = [(s, e) for s, e in self.awaiting if s > seq]
        for e in done if ok else ():
            emit({**e, "t": sending})  # when it was sent: the post's own time counts as waiting


class Fleet:
    """The hollow nodes of one process. Threads: each node's HttpSource worker (blocked in a watch),
    plus a few shared workers for passes and status reports instead of one Reconciler and one
    Reporter thread per node, and one thread that keeps every node's reporter schedule (`_due`)."""

    def __init__(
        self,
        url: str,
        first: int,
        count: int,
        workers: int,
        state_root: str,
        *,
        rollout_events: bool = False,
        repass: float = 0.0,
    ) -> None:
        self._queue: queue.Queue[int] = queue.Queue()
        self._pending: set[int] = set()  # a pass is due (queued, or to run again after the one running)
        self._running: set[int] = set()  # a worker is in this node's pass
        self._lock = threading.Lock()
        self._repass = repass
        self._later: list[tuple[float, int]] = []  # (when, node): passes due after minReadySeconds
        self._later_cond = threading.Condition()
        self.nodes = {
            i: Node(i, url, state_root, self.wake, rollout_events) for i in range(first, first + count)
        }
        self.passes = 0
        self._counted: dict[tuple[str, str], set[int]] = {}  # (what, owner) -> nodes that have it
        self._workers = [threading.Thread(target=self._work, daemon=True) for _ in range(workers)]
        self._reports: ThreadPoolExecutor | None = None  # heartbeats
        self._changes: ThreadPoolExecutor | None = None  # reports on change
        self.heartbeat_lags: list[float] = []  # how long each heartbeat waited for a report thread
        self.heartbeats_skipped = 0  # heartbeats not queued: the node's previous one had not started
        self._due: list[tuple[float, int, bool]] = []  # (when, node, heartbeat): the reporters' schedule
        self._due_cond = threading.Condition()

    def wake(self, index: int) -> None:
        """A source changed: one pass for that node soon; wake-ups before it starts coalesce."""
        self.nodes[index].source_changed()
        self._enqueue(index)

    def _enqueue(self, index: int) -> None:
        with self._lock:
            if index in self._pending:
                return
            self._pending.add(index)
            if index in self._running:
                return  # the worker in its pass runs it again when done: one pass at a time per node
        self._queue.put(index)

    def _work(self) -> None:
        while True:
            index = self._queue.get()
            while True:
                with self._lock:
                    self._pending.discard(index)
                    self._running.add(index)
                try:
                    self._pass(index)
                finally:
                    with self._lock:
                        self._running.discard(index)
                        again = index in self._pending
                if not again:
                    break

    def _pass(self, index: int) -> None:
        """One pass of one node, never two at once (as the real agent's one Reconciler thread): two
        concurrent passes finish in any order, and the one that planned before the other acted would
        post its stale report last. It stayed: the node, handed the new revision and running it,
        reported the old pod forever, and the rollout stalled."""
        node = self.nodes[index]
        try:
            waiting = node.reconcile()
            if waiting and self._repass > 0:
                with self._later_cond:
                    heapq.heappush(self._later, (time.monotonic() + self._repass, index))
                    self._later_cond.notify()
            self._report_changed(node)
        except Exception as exc:  # one node's failure must not stop the others
            print(f"node {index}: pass failed: {exc!r}", file=sys.stderr)
        with self._lock:
            self.passes += 1
        self._check_complete(node)

    def _check_complete(self, node: Node) -> None:
        """Counts what this node has newly received or started; the last node to do so completes it.
        (Looking at every node after every pass was O(nodes) a pass: at 1000 nodes a process, about
        7 % of the simulation's CPU during a rollout, under a profiler.)"""
        for what in ("received", "started"):
            times: dict[str, float] = getattr(node, what)
            for owner in list(times):
                key = (what, owner)
                with self._lock:
                    counted = self._counted.setdefault(key, set())
                    if node.index in counted:
                        continue
                    counted.add(node.index)
                    done = len(counted) == len(self.nodes)  # reached once: each node counts once
                if done:
                    every = [getattr(n, what)[owner] for n in self.nodes.values()]
                    emit(
                        {
                            "event": "complete",
                            "what": what,
                            "owner": owner,
                            "first": min(every),
                            "last": max(every),
                        }
                    )

    def _run_later(self) -> None:
        """Passes that come due (a pod waiting out minReadySeconds), in time order."""
        while True:
            with self._later_cond:
                while not self._later or self._later[0][0] > time.monotonic():
                    self._later_cond.wait(self._later[0][0] - time.monotonic() if self._later else None)
                _, index = heapq.heappop(self._later)
            self._enqueue(index)

    def _report_changed(self, node: Node) -> None:
        """A pass's report goes out as the Reporter sends it: at once, unless the last post was under
        MIN_GAP ago (and no pod turned ready: report.urgent); then when that gap ends (one queued post
        per node carries the newest report). A report whose only news is a pod's availability waits
        for the heartbeat when serve judges availability itself (report.worth_posting), and one of a pass
        that started work waits up to SETTLE_DELAY for the next pass's (Reporter.update's `settling`)."""
        with node.report_lock:
            if node.latest is None:
                return
            if not report.worth_posting(node.latest, node.sent, node.reporter.serve_judges):
                return  # no news, or only a pod's availability, which serve judges itself
            urgent = report.urgent(node.latest, node.sent)
            settling = node.settling and not urgent
            if node.change_queued and (settling or not node.settle_wait):
                return  # the queued post carries it (a wait for the next pass's report ends with it)
            now = time.monotonic()
            when = node.last_post + report.MIN_GAP
            if settling:  # the report of a pass that started work waits for the next pass's
                when = max(when, now + report.SETTLE_DELAY)
            later = when > now and (settling or not urgent)
            node.change_queued, node.settle_wait = later, later and settling
        if later:
            self._schedule(when, node.index, False)
        else:
            self._submit(node, False)

    def _schedule(self, when: float, index: int, heartbeat: bool) -> None:
        with self._due_cond:
            heapq.heappush(self._due, (when, index, heartbeat))
            self._due_cond.notify()

    def _submit(self, node: Node, heartbeat: bool) -> None:
        pool = self._reports if heartbeat else self._changes
        if pool is not None:
            with contextlib.suppress(RuntimeError):  # the pool is shut down: the simulation is ending
                pool.submit(node.report, heartbeat, self.heartbeat_lags if heartbeat else None)

    def _run_due(self, interval: float) -> None:
        """The reporters' schedule, in time order."""
        while True:
            with self._due_cond:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._due_cond.wait(self._due[0][0] - time.monotonic() if self._due else None)
                _, index, heartbeat = heapq.heappop(self._due)
            self._fire(index, heartbeat, interval)

    def _fire(self, index: int, heartbeat: bool, interval: float) -> None:
        """A queued report on change goes out; a heartbeat is due `interval` seconds after the MIN_GAP
        that follows the node's last post, as the Reporter waits (`_run`): a post since puts it off."""
        node = self.nodes[index]
        if not heartbeat:
            with node.report_lock:
                node.change_queued = node.settle_wait = False
            self._submit(node, False)
            return
        now = time.monotonic()
        with node.report_lock:
            due = node.last_post + report.MIN_GAP + interval
            queued = node.heartbeat_due is not None
            if not queued and due <= now:
                node.heartbeat_due = now
        if queued:  # one heartbeat at a time per node, as a real reporter
            self.heartbeats_skipped += 1
            self._schedule(now + interval, index, True)
        elif due > now:
            self._schedule(due, index, True)
        else:
            self._schedule(now + report.MIN_GAP + interval, index, True)
            self._submit(node, True)

    def start(self) -> None:
        for w in self._workers:
            w.start()
        threading.Thread(target=self._run_later, daemon=True).start()
        # the first fetch of every node (HttpSource.start is synchronous), spread over a few threads
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: n.agent.start_sources(), self.nodes.values()))
        # enough report threads that heartbeats keep their 10 s pace (4 for 1000 nodes fell behind
        # whenever a post took over 40 ms, and the nodes went NotReady in serve's eyes)
        self._reports = ThreadPoolExecutor(max(4, len(self.nodes) // 40))
        # reports on change have threads of their own: a real node's reporter never waits behind other
        # nodes' heartbeats (in one queue, a pod's readiness waited up to 7 s at 5000 nodes)
        self._changes = ThreadPoolExecutor(max(4, len(self.nodes) // 100))
        # a fleet's agents did not all start in the same second: each node's first report (and so the
        # phase of its heartbeats) is spread evenly over the interval
        now, gap = time.monotonic(), report.DEFAULT_INTERVAL / max(1, len(self.nodes))
        for k, (i, node) in enumerate(self.nodes.items()):
            node.change_queued = True
            self._schedule(now + k * gap, i, False)
            self._schedule(now + k * gap + report.MIN_GAP + report.DEFAULT_INTERVAL, i, True)
        threading.Thread(target=self._run_due, args=(report.DEFAULT_INTERVAL,), daemon=True).start()
        for i in self.nodes:
            self.wake(i)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", required=True, help="serve's URL, or several replicas' separated by commas")
    p.add_argument("--first", type=int, default=0, help="index of this process's first node")
    p.add_argument("--nodes", type=int, default=1000, help="nodes in this process")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--state-root", default="")
    p.add_argument("--rollout-events", action="store_true", help="emit per-node got/available events")
    p.add_argument(
        "--repass", type=float, default=0.0, help="pass again after S s while a pod awaits availability"
    )
    args = p.parse_args()
    logs.configure("error", "json")
    threading.stack_size(256 * 1024)  # hundreds of mostly idle threads
    timings = Timings()
    # the client's one home is httpclient (status posts go through it); http re-exports the name for polls
    httpclient.request = timings.wrap(httpclient.request)
    http_client.HTTPConnection.connect = stamped_connect(http_client.HTTPConnection.connect)  # type: ignore[method-assign]
    http.request = httpclient.request
    manifests.load_text = shared_parses(manifests.load_text)  # type: ignore[assignment]  # the HTTP source parses with it
    http_client.parse_headers = lean_parse_headers  # type: ignore[assignment]
    root = args.state_root or tempfile.mkdtemp(prefix="nodeagent-fleet-")
    t0 = time.monotonic()
    fleet = Fleet(
        args.url,
        args.first,
        args.nodes,
        args.workers,
        root,
        rollout_events=args.rollout_events,
        repass=args.repass,
    )
    fleet.start()
    emit({"event": "ready", "nodes": args.nodes, "startup_s": time.monotonic() - t0})
    for line in sys.stdin:
        if line.strip() == "stats":
            with timings.lock:
                doc = {
                    "event": "stats",
                    "quick": timings.quick,
                    "watch_changed": len(timings.watch_changed),
                    "watch_changed_at": timings.watch_changed,
                    "watch_timeouts": timings.watch_timeouts,
                    "errors": timings.errors,
                    "passes": fleet.passes,
                    "reports_sent": sum(n.reporter.sent for n in fleet.nodes.values()),
                    "heartbeat_lags": fleet.heartbeat_lags,
                    "heartbeats_skipped": fleet.heartbeats_skipped,
                }
                fleet.heartbeat_lags = []
                timings.quick = []
                timings.watch_changed = []
            emit(doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
