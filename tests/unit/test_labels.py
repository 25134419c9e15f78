"""The Docker label scheme (nodeagent.agent.labels): encode and decode round-trip, and old or mangled labels
read as their defaults (a container made by an older agent, or edited by hand, still plans)."""

from __future__ import annotations

from nodeagent.agent import identity, labels, plan


def test_encode_decode_round_trip() -> None:
    full = labels.ContainerLabels(
        owner="DaemonSet/ns/a",
        namespace="ns",
        pod="a-12345",
        container="main",
        spec_hash="v1-abc",
        attempt=3,
        role=labels.ROLE_INIT,
        pod_uid="uid",
        init_index=1,
        backoff_step=2,
        grace=15,
        selector_hash="sel",
        pod_labels={"app": "a"},
        pre_stop='{"sleep":5}',
        node="node-a",
    )
    encoded = labels.encode(full)
    assert labels.managed(encoded) and encoded[labels.POD_LABELS] == '{"app": "a"}'
    assert labels.decode(encoded) == full


def test_identity_builds_its_labels_through_the_scheme() -> None:
    built = identity.container_labels(
        owner="Pod/ns/p",
        namespace="ns",
        pod="p-n",
        container="c",
        spec_hash_value="v1-x",
        attempt=0,
        role="app",
    )
    meta = labels.decode(built)
    assert (meta.owner, meta.pod, meta.container, meta.attempt, meta.pod_uid) == (
        "Pod/ns/p",
        "p-n",
        "c",
        0,
        identity.pod_uid("Pod/ns/p", "p-n"),
    )
    assert (meta.grace, meta.backoff_step, meta.pod_labels, meta.pre_stop) == (None, None, None, "")
    assert plan.LABEL_GRACE == labels.GRACE and identity.LABEL_OWNER == labels.OWNER


def test_mangled_labels_read_as_their_defaults() -> None:
    meta = labels.decode(
        {labels.MANAGED: "true", labels.ATTEMPT: "x", labels.GRACE: "", labels.POD_LABELS: "[1]"}
    )
    assert (meta.attempt, meta.grace, meta.pod_labels, meta.role) == (0, None, None, labels.ROLE_APP)
    assert not labels.managed({})
