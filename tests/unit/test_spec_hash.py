"""identity.spec_hash remembers the hash of each template object: every pass plans with the same
parsed (frozen) templates until a source changes, and hashing one walks it all."""

from __future__ import annotations

import dataclasses

import pytest

from nodeagent.agent import identity
from nodeagent.k8s import manifests, model
from tests.support import manifests as support


def _template(image: str = "busybox:1") -> model.PodTemplateSpec:
    loaded = manifests.load_text(support.to_yaml(support.daemonset("hashed", image=image)), "ds.yaml")
    ds = loaded.documents[0].obj
    assert isinstance(ds, model.DaemonSet)
    return ds.spec.template


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    walks: list[int] = []
    real = identity._canonical

    def counted(value: object) -> object:
        if isinstance(value, model.PodTemplateSpec):
            walks.append(1)
        return real(value)

    monkeypatch.setattr(identity, "_canonical", counted)
    return walks


def test_the_same_template_is_hashed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    walks = _counting(monkeypatch)
    t = _template()
    first = identity.spec_hash(t)
    assert identity.spec_hash(t) == first
    assert walks == [1]


def test_equal_templates_hash_alike_and_a_change_hashes_anew(monkeypatch: pytest.MonkeyPatch) -> None:
    walks = _counting(monkeypatch)
    a, b = _template(), _template()
    assert a is not b and identity.spec_hash(a) == identity.spec_hash(b)
    changed = dataclasses.replace(a, metadata=dataclasses.replace(a.metadata, labels={"other": "x"}))
    assert identity.spec_hash(changed) != identity.spec_hash(a)
    assert identity.spec_hash(_template("busybox:2")) != identity.spec_hash(a)
    assert len(walks) == 4


def test_the_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(identity, "_HASHED_MAX", 3)
    monkeypatch.setattr(identity, "_hashed", {})
    for i in range(10):
        identity.spec_hash(_template(f"busybox:{i}"))
        assert len(identity._hashed) <= 3
