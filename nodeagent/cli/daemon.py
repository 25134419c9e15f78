"""`nodeagent run`: the long-running agent and everything around its reconcile loop.

Signals (SIGTERM/SIGINT stop, SIGHUP reloads), systemd's notify protocol and watchdog, the health
server, the status reporter, the config watch and the pass metrics. Stopping the agent never stops
workloads.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import structlog

import nodeagent
from nodeagent import errors, settings
from nodeagent.agent import agent as agent_mod
from nodeagent.agent import reconciler, statefiles
from nodeagent.cli import common
from nodeagent.fleet import report
from nodeagent.k8s import model
from nodeagent.service import health, kubestate, metrics
from nodeagent.service import systemd as sd

log = structlog.get_logger(__name__)


class MeteredReconciler(reconciler.Reconciler):
    """The reconciler, with each pass's duration in `nodeagent_reconcile_duration_seconds`."""

    def run_once(self) -> float | None:
        with metrics.RECONCILE_SECONDS.time():
            return super().run_once()


def cmd_run(cfg: settings.Settings, config_path: str) -> int:
    """The long-running agent. Stopping it never stops workloads."""
    # without an engine, keep trying: it may start after us (systemd ordering is not a guarantee)
    runtime = common.runtime(cfg) or common.docker_runtime(cfg)
    loop: reconciler.Reconciler | None = None

    def wake() -> None:
        if loop is not None:
            loop.wake()

    a = agent_mod.Agent(cfg, runtime, watch=True, on_change=wake)
    a.publish_workers = True  # stateDir/workers.json: Terminating pods and work in flight, for `status`
    loop = MeteredReconciler(a, resync_interval=cfg.resync_interval)
    reporter: report.Reporter | None = None
    if cfg.status_server:
        reporter = report.Reporter(report.servers(cfg), a.node.name, auth=report.credentials_for(cfg))
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
        reload_config(a, config_path)
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
        doc = report.node_report(a, result)
        _record_metrics(result, doc)
        if reporter is not None:
            reporter.update(doc, settling=bool(result.plan.actions))  # this pass started work
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
        statefiles.save_workers(a.settings.state_dir, {})  # work in flight is left to the engine
    log.info("agent_stopped", work_left_in_flight=sorted(a.workers.busy()) or None)
    return common.EXIT_OK


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


def reload_config(a: agent_mod.Agent, path: str) -> None:
    """The agent on the config file as it is now; a config that does not load keeps the previous one."""
    try:
        cfg = settings.load(path)
    except errors.ConfigError as exc:
        log.error("config_reload_failed", error=str(exc), keeping="previous config")
        return
    a.reload(cfg)
    log.info("config_reloaded", node=a.node.name, labels=dict(a.node.labels), taints=len(a.node.taints))


def _pods(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every pod of a node report's status: the DaemonSets' and the static ones."""
    st = doc["status"]
    return [p for d in st["daemonSets"] for p in d["pods"]] + list(st["staticPods"])


def _status_line(result: agent_mod.PassResult, doc: dict[str, Any]) -> str:
    """systemd's STATUS=: pods running, pods failing (backoff, failed actions, Failed phase), sources."""
    pods = _pods(doc)
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
    for p in _pods(doc):
        phases[p["phase"]] = phases.get(p["phase"], 0) + 1
    metrics.set_pods(phases)
    kubestate.set_status(doc["status"])  # kube-state-metrics series on the agent's /metrics


def _stuck(source: object) -> model.Problem | None:
    stuck = getattr(source, "stuck_problem", None)
    return stuck() if callable(stuck) else None
