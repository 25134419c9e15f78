"""An images directory (`imagesDir`): image tarballs imported into the engine at start and on change.

Like k3s' air-gap images directory: drop `docker save` output (optionally gzip/xz-compressed) into the
directory and pods that were waiting for the image (ErrImagePull, ErrImageNeverPull) start. A tarball is
imported once per content signature (size, mtime, inode); one that is still being written (its size still
changes) or fails to load is tried again on the next change or relist, and never stops the agent.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import structlog
from watchdog import events as wd_events
from watchdog import observers

from nodeagent import errors

log = structlog.get_logger(__name__)

SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.bz2")
_Signature = tuple[int, int, int]  # size, mtime_ns, inode


def is_image_tarball(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(SUFFIXES)


def _signature(path: str) -> _Signature | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


class ImagesDirectory:
    """Imports new tarballs through `loader` (the runtime's `load_images`) and calls `on_change`."""

    def __init__(
        self,
        path: str,
        loader: Callable[[str], list[str]],
        on_change: Callable[[], None],
        *,
        relist_interval: float = 30.0,
        settle: float = 0.3,
        watch: bool = True,
    ) -> None:
        self.path = os.path.abspath(path)
        self._loader = loader
        self._on_change = on_change
        self._relist_interval = relist_interval
        self._settle = settle
        self._watch = watch
        self._imported: dict[str, _Signature] = {}
        self._not_regular: set[str] = set()  # warned about once
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._observer: object | None = None
        self.loaded: list[str] = []  # every image name imported so far (for logs and tests)

    def start(self) -> None:
        if self._watch:
            self._start_watch()  # before the first scan, so nothing dropped in between is missed
        self.scan()
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="images-dir", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._stop_watch()

    def scan(self) -> list[str]:
        """Import every tarball that is new or changed and has stopped growing; returns loaded names."""
        with self._lock:
            try:
                names = sorted(n for n in os.listdir(self.path) if is_image_tarball(n))
            except OSError as exc:
                log.info("images_dir_unavailable", directory=self.path, error=exc.strerror or str(exc))
                return []
            loaded: list[str] = []
            for name in names:
                path = os.path.join(self.path, name)
                if not os.path.isfile(path):  # a FIFO would block the import for good; a dir is no tarball
                    if path not in self._not_regular:
                        self._not_regular.add(path)
                        log.warning(
                            "image_tarball_not_regular", file=path, error="not a regular file; skipped"
                        )
                    continue
                self._not_regular.discard(path)
                sig = _signature(path)
                if sig is None or self._imported.get(path) == sig:
                    continue
                time.sleep(self._settle)
                if _signature(path) != sig:
                    self._wake.set()  # still being written: look again soon
                    continue
                try:
                    images = self._loader(path)
                except errors.NodeAgentError as exc:
                    log.warning("image_import_failed", file=path, error=str(exc))
                    continue
                self._imported[path] = sig
                loaded += images
                log.info("images_imported", file=path, images=images)
            for gone in [p for p in self._imported if not os.path.exists(p)]:
                del self._imported[gone]
            self.loaded += loaded
        if loaded:
            self._on_change()
        return loaded

    # --- background -------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            interval = self._relist_interval
            if self._watch and self._observer is None:
                self._start_watch()
                if self._observer is None:
                    interval = min(interval, 1.0)  # the directory does not exist yet: look again soon
            self._wake.wait(interval)
            if self._stop.is_set():
                return
            self._wake.clear()
            self.scan()

    def _start_watch(self) -> None:
        if not os.path.isdir(self.path):
            return
        handler = _Handler(self._wake.set)
        observer = observers.Observer()
        try:
            observer.schedule(handler, self.path, recursive=False)
            observer.start()
        except OSError as exc:
            log.info("images_dir_not_watched", directory=self.path, error=str(exc))
            return
        self._observer = observer

    def _stop_watch(self) -> None:
        observer = self._observer
        self._observer = None
        if observer is not None:
            observer.stop()  # type: ignore[attr-defined]
            observer.join()  # type: ignore[attr-defined]


class _Handler(wd_events.FileSystemEventHandler):
    def __init__(self, callback: Callable[[], None]) -> None:
        super().__init__()
        self._callback = callback

    def on_any_event(self, event: object) -> None:
        self._callback()
