"""Desired state: the per-source snapshots merged into one view, with the safety rules applied.

No I/O: sources push `Snapshot`s in, the reconciler reads `state()`. Rules (ARCHITECTURE.md §2, §3):
- a source's last good snapshot stays in force while it fails (an `ok=False` snapshot only adds errors);
- the same object (kind, namespace, name) defined twice, in two sources or two files (or twice in one
  file), is a conflict: the definition that was in force first stays, and an error names both places.
  When both appear at once (at start), the earlier source in the configured order wins, then the
  smaller file name, then the smaller document index. When the winner's definition is withdrawn, the
  next one takes over;
- a DaemonSet whose selector differs from the version in force is refused, the version in force stays
  and an error says why (Kubernetes keeps `spec.selector` immutable). This binds updates only: when the
  file that defined a DaemonSet no longer does, the DaemonSet was deleted, and a definition elsewhere (or
  later) is a new DaemonSet that may choose any selector;
- `all_sources_seen` turns True once every configured source delivered a good snapshot since start;
  until then the planner removes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from nodeagent.k8s import manifests, model
from nodeagent.sources import snapshot as snap

T = TypeVar("T", model.DaemonSet, model.Pod, model.ConfigMap, model.Secret)

NamespacedName = tuple[str, str]


@dataclass(frozen=True)
class Entry(Generic[T]):
    """An object in force, and where it came from (for `plan` output and error messages); the planner
    takes these as its inputs (`plan.DaemonSetInput`, `plan.StaticPodInput`)."""

    obj: T
    source: str = ""
    file: str = ""
    index: int = 0


DaemonSetEntry = Entry[model.DaemonSet]
StaticPodEntry = Entry[model.Pod]
ConfigMapEntry = Entry[model.ConfigMap]
SecretEntry = Entry[model.Secret]


@dataclass(frozen=True)
class DesiredState:
    """What this node should run, merged from every source; a plain value the planner reads."""

    daemonsets: Mapping[NamespacedName, DaemonSetEntry]
    static_pods: Mapping[NamespacedName, StaticPodEntry]
    config_maps: Mapping[NamespacedName, ConfigMapEntry]
    secrets: Mapping[NamespacedName, SecretEntry]
    errors: tuple[model.Problem, ...] = ()
    warnings: tuple[model.Problem, ...] = ()
    all_sources_seen: bool = False
    pending_sources: tuple[str, ...] = ()  # sources that have not delivered a good snapshot yet
    # owners (`DaemonSet/ns/name`) whose newest version was refused: the planner must not touch their pods
    protected_owners: frozenset[str] = frozenset()

    def lookup(self, kind: str, namespace: str, name: str) -> Mapping[str, str | bytes] | None:
        """A ConfigMap's or Secret's data, or None when it does not exist (podconfig's `Lookup`)."""
        if kind == "ConfigMap":
            cm = self.config_maps.get((namespace, name))
            if cm is None:
                return None
            data: dict[str, str | bytes] = dict(cm.obj.binary_data)
            data.update(cm.obj.data)
            return data
        if kind == "Secret":
            secret = self.secrets.get((namespace, name))
            return None if secret is None else dict(secret.obj.data)
        return None


EMPTY = DesiredState(daemonsets={}, static_pods={}, config_maps={}, secrets={})


@dataclass(frozen=True)
class _Candidate:
    rank: tuple[int, str, int]  # (source order, file, index): the tie-break when nothing is in force
    source: str
    doc: model.Document

    @property
    def owner(self) -> tuple[str, str]:
        return (self.source, self.doc.file)


class Merger:
    """Owns the merge of all sources; remembers who defined what, so the first definition keeps winning.

    Not thread-safe: call it from the reconciler's thread only.
    """

    def __init__(self, source_names: Sequence[str]) -> None:
        if len(set(source_names)) != len(source_names):
            raise ValueError(f"source names must be unique: {list(source_names)}")
        self._sources = tuple(source_names)
        self._good: dict[str, snap.Snapshot] = {}
        self._latest: dict[str, snap.Snapshot] = {}
        self._owners: dict[tuple[str, str, str], tuple[str, str]] = {}  # object key -> (source, file)
        self._accepted: dict[NamespacedName, DaemonSetEntry] = {}
        self._state = replace(EMPTY, pending_sources=self._sources, all_sources_seen=not self._sources)

    def update(self, snapshot: snap.Snapshot) -> DesiredState:
        """Take a source's new snapshot (ok or failed) and return the new merged state."""
        if snapshot.source not in self._sources:
            raise ValueError(f"unknown source {snapshot.source!r}; known: {list(self._sources)}")
        self._latest[snapshot.source] = snapshot
        if snapshot.ok:
            self._good[snapshot.source] = snapshot
        self._state = self._merge()
        return self._state

    def update_failure(self, source: str, problem: model.Problem) -> DesiredState:
        """A source failed before it ever delivered: show why, keep whatever is in force."""
        return self.update(snap.Snapshot(source=source, errors=(problem,), ok=False))

    def state(self) -> DesiredState:
        """The merged state as of the last `update`."""
        return self._state

    def _merge(self) -> DesiredState:
        errors: list[model.Problem] = []
        warnings: list[model.Problem] = []
        candidates: dict[tuple[str, str, str], list[_Candidate]] = {}
        for order, source in enumerate(self._sources):
            latest = self._latest.get(source)
            good = self._good.get(source)
            if latest is not None:
                errors.extend(latest.errors)
            if good is None:
                continue
            warnings.extend(good.warnings)
            for doc in good.documents:
                c = _Candidate((order, doc.file, doc.index), source, doc)
                candidates.setdefault(model.object_key(doc.obj), []).append(c)

        owners: dict[tuple[str, str, str], tuple[str, str]] = {}
        winners: dict[tuple[str, str, str], _Candidate] = {}
        for key, found in candidates.items():
            found.sort(key=lambda c: c.rank)
            previous_owner = self._owners.get(key)
            winner = next((c for c in found if c.owner == previous_owner), found[0])
            errors.extend(_conflict(loser, winner) for loser in found if loser is not winner)
            owners[key] = winner.owner
            winners[key] = winner
        self._owners = owners

        daemonsets: dict[NamespacedName, DaemonSetEntry] = {}
        static_pods: dict[NamespacedName, StaticPodEntry] = {}
        config_maps: dict[NamespacedName, ConfigMapEntry] = {}
        secrets: dict[NamespacedName, SecretEntry] = {}
        protected: set[str] = set()
        for (_, namespace, name), c in sorted(winners.items()):
            obj, where = c.doc.obj, (c.source, c.doc.file, c.doc.index)
            nn = (namespace, name)
            if isinstance(obj, model.DaemonSet):
                kept, problem = self._check_selector(Entry(obj, *where))
                if problem is not None:
                    errors.append(replace(problem, file=c.doc.file, document=c.doc.index))
                    protected.add(f"DaemonSet/{namespace}/{name}")
                daemonsets[nn] = kept
            elif isinstance(obj, model.Pod):
                static_pods[nn] = Entry(obj, *where)
            elif isinstance(obj, model.ConfigMap):
                config_maps[nn] = Entry(obj, *where)
            else:
                secrets[nn] = Entry(obj, *where)
        self._accepted = daemonsets

        pending = tuple(s for s in self._sources if s not in self._good)
        return DesiredState(
            daemonsets=daemonsets,
            static_pods=static_pods,
            config_maps=config_maps,
            secrets=secrets,
            errors=tuple(errors),
            warnings=tuple(warnings),
            all_sources_seen=not pending,
            pending_sources=pending,
            protected_owners=frozenset(protected),
        )

    def _check_selector(self, entry: DaemonSetEntry) -> tuple[DaemonSetEntry, model.Problem | None]:
        """The entry to keep in force: the new one, or the accepted one (and why) if the selector changed."""
        accepted = self._accepted.get((entry.obj.metadata.namespace, entry.obj.metadata.name))
        if accepted is None or (accepted.source, accepted.file) != (entry.source, entry.file):
            return entry, None  # new, or its previous definition was withdrawn: a new DaemonSet
        problem = manifests.selector_changed(accepted.obj, entry.obj)
        return (entry, None) if problem is None else (accepted, problem)


def _conflict(loser: _Candidate, winner: _Candidate) -> model.Problem:
    obj = loser.doc.obj
    where = f"{winner.doc.file}#{winner.doc.index} (source {winner.source})"
    return model.Problem(
        file=loser.doc.file,
        document=loser.doc.index,
        kind=obj.kind,
        name=obj.metadata.name,
        path="metadata.name",
        message=(
            f"{obj.kind} {obj.metadata.namespace}/{obj.metadata.name} is already defined in {where}; "
            f"that definition was first and stays in force, this one (source {loser.source}) is ignored"
        ),
    )


def merge_all(source_names: Sequence[str], snapshots: Iterable[snap.Snapshot]) -> DesiredState:
    """One-shot merge (for `plan`/`sync`, which read every source once)."""
    merger = Merger(source_names)
    for s in snapshots:
        merger.update(s)
    return merger.state()
