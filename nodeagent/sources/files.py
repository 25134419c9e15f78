"""A directory of manifest files as a source: watchdog for speed, a periodic relist for certainty.

Used twice: for the DaemonSet directories of `sources:` (DaemonSets plus the ConfigMaps and Secrets they
use) and for `staticPodPath` (Pods only, as the kubelet's staticPodPath accepts only Pods). A kind that
does not belong in a source is an error at `kind` for that document, like any validation error.

Safety (ARCHITECTURE.md §2), all decided here so the merger only ever sees full, good snapshots:
- an unreadable or missing directory produces no new snapshot: before the first good listing
  `snapshot()` is None, afterwards it is the last good one marked `ok=False`;
- a file that fails as a whole (unreadable, not YAML, truncated) keeps its previous good documents;
- a document that fails keeps its previous good version while the file's other documents update;
- only deleting (or renaming away) a file withdraws its objects.

Matching a failed document to its previous version: by identity first, by position second. The errors
of a failed document still carry the kind and name when those could be read, so the previous document
with that (kind, name) is kept even if documents above it were added or removed in the same edit
(matching by index alone would then keep the wrong object and withdraw the right one). Only when the
identity is unknown (kind or name is what is broken) does the document previously at the same index
stay. A previous document whose identity is now defined by a valid document of the file is never kept.

The directory is read non-recursively (subdirectories are skipped, as the kubelet does); dot-files and
editor backups are skipped via `manifests.is_manifest_filename`. Symlinks are followed, so a Kubernetes
ConfigMap-style `..data` swap is seen too.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, replace
from typing import Any

import structlog
from watchdog import events as wd_events
from watchdog import observers as wd_observers
from watchdog.observers import api as wd_api

from nodeagent.k8s import manifests, model, policy
from nodeagent.sources import snapshot as snap

log = structlog.get_logger(__name__)

DAEMONSET_SOURCE_KINDS: frozenset[str] = frozenset({"DaemonSet", "ConfigMap", "Secret"})
STATIC_POD_SOURCE_KINDS: frozenset[str] = frozenset({"Pod"})


# Events that mean content may have changed; opened/closed-without-write are our own reads.
_CONTENT_EVENTS = frozenset(
    {
        wd_events.EVENT_TYPE_CREATED,
        wd_events.EVENT_TYPE_MODIFIED,
        wd_events.EVENT_TYPE_DELETED,
        wd_events.EVENT_TYPE_MOVED,
        wd_events.EVENT_TYPE_CLOSED,
    }
)

_Signature = tuple[int, int, int, int]


@dataclass(frozen=True)
class FileContent:
    """What one file contributes: the documents in force and the problems found on the last read."""

    documents: tuple[model.Document, ...] = ()
    errors: tuple[model.Problem, ...] = ()
    warnings: tuple[model.Problem, ...] = ()
    kept: tuple[int | None, ...] = ()  # failed document indexes (None: whole file) whose old version stays


def merge_file(
    previous: FileContent | None,
    result: model.LoadResult,
    file: str,
    allowed_kinds: Collection[str],
    pol: policy.Policy = policy.DEFAULT,
) -> FileContent:
    """Combine a fresh load of `file` with its previous content, keeping good versions of what failed.

    The one place every source's documents pass: a kind the source may not define, or a pod (template)
    its policy refuses, fails that document like a validation error, so its last good version stays.
    """
    old_docs = previous.documents if previous is not None else ()
    errors = list(result.errors)
    failed: set[int] = set()
    whole_file_failed = False
    for _, index in result.failed:
        if index is None:
            whole_file_failed = True
        else:
            failed.add(index)

    fresh: list[model.Document] = []
    for doc in result.documents:
        if doc.obj.kind not in allowed_kinds:
            errors.append(
                model.Problem(
                    file=doc.file,
                    document=doc.index,
                    kind=doc.obj.kind,
                    name=doc.obj.metadata.name,
                    path="kind",
                    message=f"kind {doc.obj.kind} is not allowed in this source "
                    f"(allowed: {', '.join(sorted(allowed_kinds))})",
                )
            )
            failed.add(doc.index)
        elif refused := policy.problems(doc, pol):
            errors.extend(refused)
            failed.add(doc.index)
        elif doc.index not in failed:
            fresh.append(doc)

    if whole_file_failed:
        return FileContent(old_docs, tuple(errors), result.warnings, (None,) if old_docs else ())

    taken = {model.object_key(d.obj) for d in fresh}
    kept_docs: list[model.Document] = []
    kept: set[int] = set()

    def keep(doc: model.Document, index: int) -> None:
        # A `kind: List` document held several objects at one index: it is kept (or not) as a whole.
        for d in old_docs:
            if d.index == doc.index and model.object_key(d.obj) not in taken:
                taken.add(model.object_key(d.obj))
                kept_docs.append(replace(d, file=file, index=index))
                kept.add(index)

    # By identity first, for every failed document, before any positional guess can claim an object.
    unmatched: list[int] = []
    for index in sorted(failed):
        hints = _identity_hints(errors, index)
        matches = [d for d in old_docs if _name(d) in hints and model.object_key(d.obj) not in taken]
        for d in matches:
            keep(d, index)
        if not matches:
            unmatched.append(index)
    # Then by position, for failed documents whose identity could not be read.
    for index in unmatched:
        for d in old_docs:
            if d.index == index and model.object_key(d.obj) not in taken:
                keep(d, index)
    documents = tuple(sorted(fresh + kept_docs, key=lambda d: d.index))
    return FileContent(documents, tuple(errors), result.warnings, tuple(sorted(kept)))


def _name(doc: model.Document) -> tuple[str, str]:
    return (doc.obj.kind, doc.obj.metadata.name)


def _identity_hints(errors: Iterable[model.Problem], index: int) -> set[tuple[str, str]]:
    """(kind, name) of the objects of a failed document, as far as its errors could still tell."""
    return {(p.kind, p.name) for p in errors if p.document == index and p.kind and p.name}


FULL_RELIST_EVERY = 10
STUCK_AFTER = 30.0  # a scan running longer than this is reported (status, /readyz)


def report_problems(logger: Any, previous: FileContent | None, content: FileContent) -> None:
    """Log a file's (or a bundle's) problems when they change, so a broken manifest is reported once,
    not at every relist or poll."""
    old_errors = previous.errors if previous is not None else ()
    if content.errors == old_errors:
        return
    for p in content.errors:
        logger.warning(
            "manifest_invalid",
            document=p.document,
            kind=p.kind,
            name=p.name,
            path=p.path,
            message=p.message,
            kept_previous=None in content.kept or p.document in content.kept,
        )
    if not content.errors:
        logger.info("manifest_valid")


def notify(logger: Any, on_change: Callable[[], None]) -> None:
    """Tell the merger a source's snapshot changed: a failing callback is logged, never raised into the
    source's own thread."""
    try:
        on_change()
    except Exception:
        logger.exception("on_change_failed")


class DirectorySource:
    """One watched directory of manifests; `snapshot()` is its current full snapshot.

    Thread-safe: events and the relist timer are handled on one worker thread, `relist()` may be called
    from any thread, and scans are serialised. `on_change` runs on whichever thread made the snapshot
    change (normally the worker) and should only wake the reconciler.
    """

    def __init__(
        self,
        name: str,
        path: str,
        on_change: Callable[[], None],
        relist_interval: float = 30.0,
        debounce: float = 0.05,
        *,
        allowed_kinds: Collection[str] = DAEMONSET_SOURCE_KINDS,
        watch: bool = True,
        retry_interval: float = 1.0,
        pol: policy.Policy = policy.DEFAULT,
    ) -> None:
        self.name = name
        self._policy = pol
        self.path = os.path.abspath(path)
        self._on_change = on_change
        self._relist_interval = relist_interval
        self._debounce = debounce
        self._allowed_kinds = frozenset(allowed_kinds)
        self._watch_enabled = watch
        self._retry_interval = retry_interval  # while missing or unwatched, look again this often
        self._log = log.bind(source=name, directory=self.path)

        self._scan_lock = threading.Lock()  # one scan at a time; guards _files and _available
        self._files: dict[str, tuple[_Signature | None, FileContent]] = {}
        self._available: bool | None = None  # None: never tried
        self._failure: model.Problem | None = None
        self._scans: dict[object, float] = {}  # scans running (or waiting for the lock): monotonic start
        self._scans_lock = threading.Lock()

        self._state_lock = threading.Lock()  # guards _snapshot
        self._snapshot: snap.Snapshot | None = None
        self._last_good: snap.Snapshot | None = None

        self._cond = threading.Condition()  # guards the pending-event fields below and _stopping
        self._pending_names: set[str] = set()
        self._pending = False
        self._first_event = 0.0
        self._last_event = 0.0
        self._stopping = False
        self._thread: threading.Thread | None = None

        self._observer: wd_api.BaseObserver | None = None  # owned by the worker thread
        self._watched_inode: tuple[int, int] | None = None
        # the directory could not be listed since the watch started: watch it anew once it is back (a
        # directory removed and made again may get the same inode number, and the old watch is dead)
        self._rewatch = False

    # --- public -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Do a first listing, then watch and relist in the background until `stop()`."""
        if self._thread is not None:
            return
        self.relist()
        with self._cond:
            self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"source-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching; the last snapshot stays readable."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def snapshot(self) -> snap.Snapshot | None:
        """The current full snapshot; None until the directory was listed successfully once. While a
        scan is stuck, the last one marked not ok with the reason (so removals are held and `status`
        says why)."""
        stuck = self.stuck_problem()
        with self._state_lock:
            shot = self._snapshot
        if stuck is not None and shot is not None:
            return replace(shot, ok=False, errors=(stuck, *shot.errors))
        return shot

    @property
    def failure(self) -> model.Problem | None:
        """Why the directory cannot be read right now (also before the first good listing), or None."""
        return self.stuck_problem() or self._failure

    def stuck_problem(self, now: float | None = None) -> model.Problem | None:
        """A Problem when the current scan has run for longer than STUCK_AFTER (a hung filesystem: a
        read that never returns cannot be interrupted, but it can be reported)."""
        with self._scans_lock:
            started = min(self._scans.values(), default=None)
        if started is None:
            return None
        running = (time.monotonic() if now is None else now) - started
        if running <= STUCK_AFTER:
            return None
        return model.Problem.of_file(
            self.path,
            f"source {self.name}: a scan of the directory has been stuck for {running:.0f}s "
            "(a hung filesystem?); the last good content stays in force",
        )

    def relist(self) -> None:
        """Rescan synchronously, re-reading every file (the safety net, and `nodeagent sync`'s one pass)."""
        self._scan(None)

    # --- scanning ---------------------------------------------------------------------------------

    def _scan(self, force: Collection[str] | None) -> None:
        """`_scan_locked`, timed: a scan (or the wait for one) running too long is `stuck_problem`."""
        token = object()
        with self._scans_lock:
            self._scans[token] = time.monotonic()
        try:
            self._scan_locked(force)
        finally:
            with self._scans_lock:
                del self._scans[token]

    def _scan_locked(self, force: Collection[str] | None) -> None:
        """List the directory and re-read files that changed, or all of them when `force` is None."""
        with self._scan_lock:
            try:
                names = sorted(os.listdir(self.path))
            except OSError as exc:
                self._unavailable(exc)
                return
            if self._available is False:
                self._log.info("source_recovered")
            self._available = True
            self._failure = None

            files: dict[str, tuple[_Signature | None, FileContent]] = {}
            for name in names:
                if not manifests.is_manifest_filename(name):
                    continue
                full = os.path.join(self.path, name)
                if os.path.isdir(full):
                    continue  # not recursive, as the kubelet
                signature = _signature(full)
                old = self._files.get(name)
                if (
                    old is not None
                    and force is not None
                    and name not in force
                    and signature is not None
                    and old[0] == signature
                ):
                    files[name] = old
                    continue
                previous = old[1] if old is not None else None
                loaded = manifests.load_file(full)
                if signature is not None and signature[2] == 0:
                    loaded = truncated(full)  # a write in progress (`>` truncates first), not a withdrawal
                content = merge_file(previous, loaded, full, self._allowed_kinds, self._policy)
                self._report(full, previous, content)
                files[name] = (signature, content)
            for name in self._files.keys() - files.keys():
                self._log.info("manifest_withdrawn", file=os.path.join(self.path, name))
            self._files = files
            new = snap.Snapshot(
                source=self.name,
                documents=tuple(d for _, c in files.values() for d in c.documents),
                errors=tuple(p for _, c in files.values() for p in c.errors),
                warnings=tuple(p for _, c in files.values() for p in c.warnings),
                ok=True,
            )
            self._publish(new, good=True)

    def _unavailable(self, exc: OSError) -> None:
        self._rewatch = True
        reason = exc.strerror or str(exc)
        if self._available is not False:
            self._log.warning("source_unavailable", error=reason)
        self._available = False
        self._failure = model.Problem.of_file(
            self.path,
            f"source {self.name}: cannot read directory: {reason}; last good content stays in force",
        )
        with self._state_lock:
            last_good = self._last_good
        if last_good is not None:
            failed = replace(last_good, ok=False, errors=(self._failure, *last_good.errors))
            self._publish(failed, good=False)

    def _publish(self, new: snap.Snapshot, *, good: bool) -> None:
        with self._state_lock:
            changed = new != self._snapshot
            self._snapshot = new
            if good:
                self._last_good = new
        if changed:
            notify(self._log, self._on_change)

    def _report(self, file: str, previous: FileContent | None, content: FileContent) -> None:
        report_problems(self._log.bind(file=file), previous, content)

    # --- background -------------------------------------------------------------------------------

    def _run(self) -> None:
        """Worker: debounced event scans, periodic relists, and keeping the watch alive."""
        next_relist = time.monotonic() + self._relist_interval
        relists = 0
        try:
            while True:
                self._ensure_watch()
                interval = self._relist_interval
                if self._watch_enabled and self._observer is None:
                    interval = min(interval, self._retry_interval)
                with self._cond:
                    if self._stopping:
                        return
                    now = time.monotonic()
                    next_relist = min(next_relist, now + interval)
                    deadline = next_relist
                    if self._pending:
                        flush_at = min(
                            self._last_event + self._debounce, self._first_event + 10 * self._debounce
                        )
                        deadline = min(deadline, flush_at)
                    if now < deadline:
                        self._cond.wait(deadline - now)
                        continue
                    force: set[str] | None = None
                    if self._pending and now < next_relist:
                        force = self._pending_names
                    self._pending_names = set()
                    self._pending = False
                if force is None:
                    next_relist = time.monotonic() + self._relist_interval
                    relists += 1
                    if relists % FULL_RELIST_EVERY:
                        # a periodic relist re-reads only files whose size, mtime or inode changed (cheap
                        # when idle); every FULL_RELIST_EVERY-th one re-reads everything, the deep net
                        force = set()
                try:
                    self._scan(force)
                except Exception:  # a bug must not end the watching for good
                    self._log.exception("source_scan_failed")
        finally:
            self._stop_watch()

    def _on_event(self, event: wd_events.FileSystemEvent) -> None:
        """Called on the watchdog thread: note what changed and let the worker debounce it."""
        if event.event_type not in _CONTENT_EVENTS:
            return
        names: set[str] = set()
        for raw in (event.src_path, event.dest_path):
            path = os.fsdecode(raw) if raw else ""
            if path and os.path.dirname(path) == self.path:
                names.add(os.path.basename(path))
        with self._cond:
            now = time.monotonic()
            if not self._pending:
                self._first_event = now
            self._pending = True
            self._last_event = now
            self._pending_names |= names
            self._cond.notify_all()

    def _ensure_watch(self) -> None:
        """(Re)start watching when the directory exists and is not watched, or was replaced."""
        if not self._watch_enabled:
            return
        try:
            st = os.stat(self.path)
            inode: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except OSError:
            inode = None
        observer = self._observer
        if (
            observer is not None
            and inode == self._watched_inode
            and not self._rewatch
            and all(e.is_alive() for e in observer.emitters)  # watchdog ends a watch whose directory went
        ):
            return
        self._stop_watch()
        if inode is None:
            return
        self._rewatch = False
        handler = _Handler(self._on_event)
        observer = wd_observers.Observer()
        try:
            observer.schedule(handler, self.path, recursive=False)
            observer.start()
        except OSError as exc:
            self._log.warning("source_watch_failed", error=exc.strerror or str(exc))
            return
        self._observer = observer
        self._watched_inode = inode
        # Anything written between the last scan and the watch starting would be missed: look once more.
        with self._cond:
            if not self._pending:
                self._first_event = time.monotonic()
            self._pending = True
            self._last_event = time.monotonic()

    def _stop_watch(self) -> None:
        observer, self._observer, self._watched_inode = self._observer, None, None
        if observer is not None:
            observer.stop()
            observer.join()


def truncated(path: str) -> model.LoadResult:
    """A zero-length file is an error, so its last good content stays (and an agent started meanwhile
    removes nothing): deleting the file, not emptying it, withdraws its objects."""
    return model.LoadResult.failed_file(
        path, f"{path} is empty; its last good content stays in force (delete the file to withdraw it)"
    )


def _signature(path: str) -> _Signature | None:
    """What tells a changed file from an unchanged one without reading it (follows symlinks)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


class _Handler(wd_events.FileSystemEventHandler):
    """Forwards every watchdog event to one callback."""

    def __init__(self, callback: Callable[[wd_events.FileSystemEvent], None]) -> None:
        super().__init__()
        self._callback = callback

    def on_any_event(self, event: wd_events.FileSystemEvent) -> None:
        self._callback(event)
