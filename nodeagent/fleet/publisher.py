"""What `serve` publishes: the manifest directory read into one bundle (last good version of each file
kept, invalid files reported, never served), rendered once per change with a strong ETag, and waited on
by watches."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import structlog
import yaml

from nodeagent.fleet import annotations as rollout_annotations
from nodeagent.k8s import manifests, model
from nodeagent.sources import files

log = structlog.get_logger(__name__)

EMPTY_LIST = {"apiVersion": "v1", "kind": "List", "items": []}

# --- the bundle ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bundle:
    body: bytes
    etag: str  # strong, quoted
    objects: int
    daemonsets: tuple[tuple[str, str], ...]
    errors: tuple[model.Problem, ...]
    published_at: float
    signature: bytes = b""  # the .minisig of `body` when serve signs (--signing-key)
    raw_objects: tuple[object, ...] = ()  # what `body` renders: the rollout controller rewrites per node


def _raw_documents(data: bytes) -> list[object] | None:
    """The raw documents of a file, aligned with manifests.load_text's indexes; None if unreadable."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    if text.lstrip().startswith(("{", "[")):
        try:
            return [json.loads(text)]
        except (ValueError, RecursionError):
            pass
    try:
        return list(yaml.load_all(text, Loader=manifests.LOADER))  # the agents' YAML dialect
    except (yaml.YAMLError, RecursionError, ValueError, TypeError):
        return None


@dataclass(frozen=True)
class _File:
    content: files.FileContent
    raw: Mapping[tuple[str, str, str], object]  # object key -> the raw object published for it


def publish_file(
    previous: _File | None,
    data: bytes,
    path: str,
    allowed_kinds: frozenset[str] = files.DAEMONSET_SOURCE_KINDS,
) -> _File:
    """One file's contribution (pure): the documents in force and the raw object for each.

    The agent-side rules (files.merge_file) decide what is in force; valid documents are published
    from this version of the file, kept ones from the raw object published before.
    """
    result = rollout_annotations.check(manifests.load_text(data, path))  # nodeagent.io/* rollout annotations
    if not data:  # a write in progress (`>` truncates first), not a withdrawal: as the directory source
        result = files.truncated(path)
    content = files.merge_file(previous.content if previous else None, result, path, allowed_kinds)
    raws = _raw_documents(data) or []
    fresh: dict[tuple[str, str, str], object] = {}
    for i, raw in enumerate(raws):
        objs = [d.obj for d in result.documents if d.index == i]
        if not objs:
            continue
        items = raw.get("items") if isinstance(raw, dict) and raw.get("kind") == "List" else [raw]
        if isinstance(items, list):
            for obj, item in zip(objs, [x for x in items if x is not None], strict=False):
                fresh[model.object_key(obj)] = item
    old_raw = previous.raw if previous else {}
    raw_map: dict[tuple[str, str, str], object] = {}
    for d in content.documents:
        key = model.object_key(d.obj)
        found = fresh.get(key) if d.index not in content.kept else None
        if found is None:
            found = old_raw.get(key)
        if found is not None:
            raw_map[key] = found
    return _File(content, raw_map)


def render_bundle(objects: list[object]) -> bytes:
    """Multi-document YAML whose documents are JSON objects (YAML reads JSON; no dialect surprises)."""
    if not objects:
        return (json.dumps(EMPTY_LIST) + "\n").encode()
    head = f"# nodeagent serve bundle: {len(objects)} object(s)\n"
    return (
        head + "\n---\n".join(json.dumps(o, sort_keys=True, default=str) for o in objects) + "\n"
    ).encode()


class Publisher:
    """Keeps the bundle of DIR current; `wait_change` is the watch primitive."""

    def __init__(
        self,
        directory: str,
        relist_interval: float = 30.0,
        signer: Callable[[bytes], bytes] | None = None,
        on_publish: Callable[[], None] | None = None,
    ) -> None:
        self.directory = os.path.abspath(directory)
        self._signer = signer
        self._on_publish = on_publish
        self._files: dict[str, _File] = {}
        self._scan_lock = threading.Lock()
        self._cond = threading.Condition()
        self._bundle: Bundle | None = None
        self._stopping = False
        self._failure: str | None = None
        self._source = files.DirectorySource(
            "serve", self.directory, self.scan, relist_interval=relist_interval, watch=True
        )

    def start(self) -> None:
        self.scan()
        self._source.start()  # watchdog + relist; its on_change triggers our scan

    def stop(self) -> None:
        self._source.stop()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    @property
    def failure(self) -> str | None:
        return self._failure

    @property
    def stopping(self) -> bool:
        return self._stopping

    def bundle(self) -> Bundle | None:
        with self._cond:
            return self._bundle

    def scan(self) -> None:
        """Re-read DIR and publish a new bundle if anything in force changed."""
        with self._scan_lock:
            try:
                names = sorted(os.listdir(self.directory))
            except OSError as exc:
                if self._failure is None:
                    log.warning("serve_directory_unreadable", directory=self.directory, error=exc.strerror)
                self._failure = f"cannot read {self.directory}: {exc.strerror or exc}"
                return
            if self._failure is not None:
                log.info("serve_directory_readable", directory=self.directory)
            self._failure = None
            new_files: dict[str, _File] = {}
            for name in names:
                full = os.path.join(self.directory, name)
                if not manifests.is_manifest_filename(name) or os.path.isdir(full):
                    continue
                try:
                    data = manifests.read_manifest_file(full)  # never blocks on a FIFO
                except OSError as exc:
                    old = self._files.get(name)
                    problem = model.Problem.of_file(full, f"cannot read {full}: {exc.strerror}")
                    keep = old.content if old else files.FileContent()
                    new_files[name] = _File(
                        files.FileContent(keep.documents, (problem,), keep.warnings, (None,)),
                        old.raw if old else {},
                    )
                    continue
                new_files[name] = publish_file(self._files.get(name), data, full)
            self._files = new_files
            self._publish()

    def _publish(self) -> None:
        objects: list[object] = []
        daemonsets: list[tuple[str, str]] = []
        errors: list[model.Problem] = []
        seen: set[tuple[str, str, str]] = set()
        for _, f in sorted(self._files.items()):
            errors.extend(f.content.errors)
            for d in f.content.documents:
                key = model.object_key(d.obj)
                if key in seen or key not in f.raw:
                    continue  # the agents would report the duplicate; publish the first only
                seen.add(key)
                objects.append(f.raw[key])
                if isinstance(d.obj, model.DaemonSet):
                    daemonsets.append((d.obj.metadata.namespace, d.obj.metadata.name))
        body = render_bundle(objects)
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        signature = b""
        if self._signer is not None:  # outside the lock (scans are serialised): watchers are not held up
            current = self.bundle()
            same = current is not None and current.etag == etag
            signature = current.signature if current is not None and same else self._signer(body)
        with self._cond:
            old = self._bundle
            if old is not None and old.etag == etag and old.errors == tuple(errors):
                return
            self._bundle = Bundle(
                body,
                etag,
                len(objects),
                tuple(sorted(daemonsets)),
                tuple(errors),
                time.time(),
                signature,
                tuple(objects),
            )
            self._cond.notify_all()
        if self._on_publish is not None:
            self._on_publish()
        if old is None or old.etag != etag:
            log.info("bundle_published", objects=len(objects), etag=etag, errors=len(errors))
        for p in errors:
            if old is None or p not in old.errors:
                log.warning(
                    "manifest_invalid", file=p.file, document=p.document, path=p.path, message=p.message
                )

    def wait_change(self, etag: str | None, timeout: float) -> Bundle | None:
        """The bundle once its ETag differs from `etag`, or the current one after `timeout`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._stopping:
                b = self._bundle
                if b is not None and b.etag != etag:
                    return b
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._bundle
