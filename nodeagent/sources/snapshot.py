"""The one thing every source hands to the merger: a full snapshot, never a diff.

Full snapshots (as the kubelet's pod-config sources send them) make a lost or doubled notification
harmless: the merger always sees the whole of a source. A source that could not be read this time
emits nothing new, or a snapshot with `ok=False`: the merger then keeps the source's last good
documents in force and only shows its errors.
"""

from __future__ import annotations

from dataclasses import dataclass

from nodeagent.k8s import model


@dataclass(frozen=True)
class Snapshot:
    """Everything one source currently defines.

    `documents` are the objects in force: the freshly valid ones plus, for a file or document that
    now fails, its previous good version. `errors` say what is wrong right now. With `ok=False` the
    source failed as a whole (unreadable directory, HTTP error): `documents` are then only the last
    good ones, repeated for information, and do not count as a delivery.
    """

    source: str
    documents: tuple[model.Document, ...] = ()
    errors: tuple[model.Problem, ...] = ()
    warnings: tuple[model.Problem, ...] = ()
    ok: bool = True
