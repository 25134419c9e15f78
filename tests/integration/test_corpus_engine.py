"""The real-world DaemonSet corpus on the real engine: what `docker inspect` shows is what the manifest says.

For each corpus manifest (../shared/corpus/daemonsets/ or NODEAGENT_CORPUS, see tests/corpus.py) that a plain
Linux node runs (the others are skipped, with Kubernetes' reason in the test id), one `nodeagent sync` runs it
with:
- its images supplied locally: the busybox test image tagged under each image name (no registry here).
  `imagePullPolicy: Always` (explicit, or the default for `:latest` and untagged images) and digest
  references cannot be satisfied offline: the original manifest is synced first and must fail cleanly
  with ErrImagePull (exit 1, no traceback); then a variant with every policy rewritten to IfNotPresent
  (and digests dropped) is synced, and its containers are checked. The rewrite changes nothing else.
- the ConfigMaps and Secrets it references but does not ship supplied, empty but with the referenced keys,
  from an extra file in the same source directory (the way an operator would ship them).
Checked per created container: hostPath binds (source, target, read-only, propagation), env (plain values
and downward-API fieldRefs), host network / PID, capabilities, host ports, memory and CPU limits, and
that Docker's own restart policy is off (restarts and their backoff are the agent's). The busybox
programs do not do the real work (they exit or fail to start; a long backoff keeps that stable): the
check is the configuration.

hostPath volumes point at real host paths (/var/lib/kubelet, /etc/cni, /run/xtables.lock, ...): the
containers really bind-mount them, and DirectoryOrCreate/FileOrCreate create them. The test records which
did not exist before and removes what it created afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from nodeagent.k8s import manifests, model, node, scheduling
from nodeagent.runtime import docker as docker_rt
from tests.corpus import corpus_params, require_corpus
from tests.support.engine import TEST_LABEL

NODEAGENT = str(Path(sys.executable).parent / "nodeagent")
LINUX_LABELS = {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}


@dataclass(frozen=True)
class Case:
    path: Path
    daemonset: model.DaemonSet
    shipped: frozenset[tuple[str, str]]  # (kind, name) of the ConfigMaps/Secrets in the file


def load_case(path: Path) -> Case:
    result = manifests.load_file(str(path))
    ds = next(d.obj for d in result.documents if isinstance(d.obj, model.DaemonSet))
    shipped = frozenset((d.obj.kind, d.obj.metadata.name) for d in result.documents if d.obj is not ds)
    return Case(path, ds, shipped)


def plain_linux_node(name: str = "corpus-node") -> node.Node:
    return node.build(name, {**LINUX_LABELS, "kubernetes.io/hostname": name}, (), False)


def param(path: Path) -> Any:
    case = load_case(path)
    decision = scheduling.decide(plain_linux_node(), case.daemonset.spec.template.spec)
    if decision.should_run:
        return pytest.param(case, id=path.stem)
    why = "; ".join(decision.reasons)
    return pytest.param(
        case, id=f"{path.stem}-skipped-not-for-a-plain-linux-node", marks=pytest.mark.skip(why)
    )


def params() -> list[Any]:
    return corpus_params(param)


# --- what the test supplies: images, ConfigMaps, Secrets, host paths ----------------------------------


def all_containers(spec: model.PodSpec) -> tuple[model.Container, ...]:
    return spec.init_containers + spec.containers


def offline_image(image: str) -> str:
    """The image reference we can tag locally: digests cannot be made offline, so they are dropped."""
    name = image.split("@", 1)[0]
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def needs_pull(spec: model.PodSpec) -> bool:
    return any(c.image_pull_policy == "Always" or "@" in c.image for c in all_containers(spec))


def referenced_objects(spec: model.PodSpec) -> dict[tuple[str, str], set[str]]:
    """(kind, name) -> keys of every ConfigMap and Secret the pod refers to (optional ones too)."""
    refs: dict[tuple[str, str], set[str]] = {}

    def add(kind: str, name: str, *keys: str) -> None:
        refs.setdefault((kind, name), set()).update(keys)

    for c in all_containers(spec):
        for e in c.env:
            src = e.value_from
            if src is not None and src.config_map_key_ref is not None:
                add("ConfigMap", src.config_map_key_ref.name, src.config_map_key_ref.key)
            if src is not None and src.secret_key_ref is not None:
                add("Secret", src.secret_key_ref.name, src.secret_key_ref.key)
        for ef in c.env_from:
            if ef.config_map_ref is not None:
                add("ConfigMap", ef.config_map_ref.name)
            if ef.secret_ref is not None:
                add("Secret", ef.secret_ref.name)
    for v in spec.volumes:
        s = v.source
        projections = s.sources if isinstance(s, model.ProjectedVolumeSource) else ()
        for p in projections:
            if p.config_map is not None:
                add("ConfigMap", p.config_map.name, *(i.key for i in p.config_map.items))
            if p.secret is not None:
                add("Secret", p.secret.secret_name, *(i.key for i in p.secret.items))
        if isinstance(s, model.ConfigMapVolumeSource):
            add("ConfigMap", s.name, *(i.key for i in s.items))
        if isinstance(s, model.SecretVolumeSource):
            add("Secret", s.secret_name, *(i.key for i in s.items))
    return refs


def supplied_objects(case: Case) -> list[dict[str, Any]]:
    """Empty ConfigMaps/Secrets (with the referenced keys) for what the manifest uses but does not ship."""
    ns = case.daemonset.metadata.namespace
    docs: list[dict[str, Any]] = []
    for (kind, name), keys in sorted(referenced_objects(case.daemonset.spec.template.spec).items()):
        if (kind, name) in case.shipped:
            continue
        data = {k: "" for k in sorted(keys)}
        docs.append(
            {"apiVersion": "v1", "kind": kind, "metadata": {"name": name, "namespace": ns}, "data": data}
        )
    return docs


def without_pulls(text: str) -> str:
    """The manifest with every imagePullPolicy IfNotPresent and digests dropped; nothing else changes."""
    docs = list(yaml.safe_load_all(text))
    for doc in docs:
        if not isinstance(doc, dict) or doc.get("kind") != "DaemonSet":
            continue
        spec = doc["spec"]["template"]["spec"]
        for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            c["image"] = offline_image(str(c["image"]))
            c["imagePullPolicy"] = "IfNotPresent"
    return yaml.safe_dump_all(docs, sort_keys=False)


def missing_top(path: str) -> str | None:
    """The top-most ancestor of `path` (or itself) that does not exist, i.e. what creating it would add."""
    p = Path(path)
    if p.exists() or p.is_symlink():
        return None
    top = p
    while not top.parent.exists():
        top = top.parent
    return str(top)


def prepare_host_paths(spec: model.PodSpec, created: list[str]) -> list[str]:
    """Make the host paths a node running these DaemonSets would have (type Directory or File, missing
    here: /var/lib/kubelet/...), recording what is new; returns the paths that cannot exist on this
    host (sockets and devices of absent software, read-only trees like /sys), where the agent must
    refuse the pod with a clear CreateContainerConfigError instead."""
    impossible: list[str] = []
    for v in spec.volumes:
        hp = v.source
        if not isinstance(hp, model.HostPathVolumeSource):
            continue
        top = missing_top(hp.path)
        if top is None:
            continue
        if hp.type in ("Socket", "CharDevice", "BlockDevice"):
            impossible.append(hp.path)
            continue
        try:
            if hp.type in ("File", "FileOrCreate"):
                Path(hp.path).parent.mkdir(parents=True, exist_ok=True)
                Path(hp.path).touch()
            else:
                Path(hp.path).mkdir(parents=True, exist_ok=True)
        except OSError:
            impossible.append(hp.path)
            continue
        created.append(top)
        if hp.type.endswith("OrCreate") or hp.type == "":
            # the agent is to create these itself: we only proved it can be done here
            if Path(top).is_dir():
                shutil.rmtree(top)
            else:
                Path(top).unlink()
    return impossible


@pytest.fixture
def host_paths() -> Iterator[list[str]]:
    """Host paths a test is about to make appear; removed afterwards (only those that did not exist)."""
    created: list[str] = []
    yield created
    for path in sorted(set(created), key=len, reverse=True):
        p = Path(path)
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists() or p.is_symlink():
            p.unlink(missing_ok=True)


@pytest.fixture
def image_tags(test_image: str) -> Iterator[list[str]]:
    """Tags of the test image made by a test; untagged afterwards (the image itself stays)."""
    made: list[str] = []
    yield made
    for tag in made:
        subprocess.run(["docker", "rmi", "--no-prune", tag], capture_output=True, check=False)


def tag_images(test_image: str, spec: model.PodSpec, made: list[str]) -> None:
    for c in all_containers(spec):
        ref = offline_image(c.image)
        exists = subprocess.run(["docker", "image", "inspect", ref], capture_output=True, check=False)
        if exists.returncode == 0:
            continue  # already there (another test, or a real image): leave it alone
        subprocess.run(["docker", "tag", test_image, ref], capture_output=True, check=True)
        made.append(ref)


# --- the expectations, read from the manifest -----------------------------------------------------


def host_path_of(spec: model.PodSpec, volume: str) -> model.HostPathVolumeSource | None:
    v = next((v for v in spec.volumes if v.name == volume), None)
    return v.source if v is not None and isinstance(v.source, model.HostPathVolumeSource) else None


# None: no propagation requested; Docker itself makes binds of paths under its data root rslave.
PROPAGATION = {
    "None": ("", "rprivate", "rslave"),
    "HostToContainer": ("rslave",),
    "Bidirectional": ("rshared",),
}


def check_container(
    info: dict[str, Any], c: model.Container, spec: model.PodSpec, ns: str, node_name: str
) -> list[str]:
    """What differs between a container's `docker inspect` and its manifest (empty: all as said)."""
    problems: list[str] = []
    hc, cfg = info["HostConfig"], info["Config"]
    mounts = {os.path.normpath(m["Destination"]): m for m in info.get("Mounts") or []}
    for vm in c.volume_mounts:
        hp = host_path_of(spec, vm.name)
        if hp is None:
            continue
        m = mounts.get(os.path.normpath(vm.mount_path))
        source = (
            os.path.normpath(os.path.join(hp.path, vm.sub_path)) if vm.sub_path else os.path.normpath(hp.path)
        )
        if m is None:
            problems.append(f"hostPath {hp.path} is not mounted at {vm.mount_path}")
            continue
        if m.get("Type") != "bind" or os.path.normpath(m["Source"]) != source:
            problems.append(f"{vm.mount_path}: bind of {m.get('Source')}, manifest says {source}")
        if m.get("RW") is vm.read_only:
            problems.append(f"{vm.mount_path}: RW={m.get('RW')}, manifest readOnly={vm.read_only}")
        if m.get("Propagation", "") not in PROPAGATION[vm.mount_propagation]:
            problems.append(
                f"{vm.mount_path}: propagation {m.get('Propagation')!r}, manifest {vm.mount_propagation}"
            )
    env = dict(e.split("=", 1) for e in cfg.get("Env") or [] if "=" in e)
    pod_name = cfg["Labels"].get("io.kubernetes.pod.name", "")
    for e in c.env:
        got = env.get(e.name)
        if e.value_from is None:
            if "$(" not in e.value and got != e.value:
                problems.append(f"env {e.name}={got!r}, manifest {e.value!r}")
            continue
        ref = e.value_from.field_ref
        if ref is None:
            continue
        want = {"spec.nodeName": node_name, "metadata.namespace": ns, "metadata.name": pod_name}.get(
            ref.field_path
        )
        if want is not None and got != want:
            problems.append(f"env {e.name} (fieldRef {ref.field_path})={got!r}, expected {want!r}")
        if ref.field_path in ("status.hostIP", "status.podIP") and not got:
            problems.append(f"env {e.name} (fieldRef {ref.field_path}) is empty")
    if spec.host_network != (hc.get("NetworkMode") == "host"):
        problems.append(f"NetworkMode {hc.get('NetworkMode')!r}, manifest hostNetwork={spec.host_network}")
    if spec.host_pid != (hc.get("PidMode") == "host"):
        problems.append(f"PidMode {hc.get('PidMode')!r}, manifest hostPID={spec.host_pid}")
    sc = c.security_context
    cap_add = {x.upper().removeprefix("CAP_") for x in hc.get("CapAdd") or []}
    cap_drop = {x.upper().removeprefix("CAP_") for x in hc.get("CapDrop") or []}
    if sc is not None and sc.privileged:
        if not hc.get("Privileged") and "ALL" not in cap_add:
            problems.append(f"privileged, but neither Privileged nor CapAdd ALL: {sorted(cap_add)}")
    elif sc is not None and sc.capabilities is not None:
        for cap in sc.capabilities.add:
            name = cap.upper().removeprefix("CAP_")
            if name not in cap_add and "ALL" not in cap_add:
                problems.append(f"capability {cap} not added: {sorted(cap_add)}")
        for cap in sc.capabilities.drop:
            if cap.upper().removeprefix("CAP_") not in cap_drop:
                problems.append(f"capability {cap} not dropped: {sorted(cap_drop)}")
    bindings = hc.get("PortBindings") or {}
    for p in c.ports:
        if p.host_port and not spec.host_network:
            got_ports = [
                b.get("HostPort") for b in bindings.get(f"{p.container_port}/{p.protocol.lower()}") or []
            ]
            if str(p.host_port) not in got_ports:
                problems.append(
                    f"hostPort {p.host_port} -> {p.container_port}/{p.protocol}: bound {got_ports}"
                )
    limits = c.resources.limits
    if "memory" in limits and hc.get("Memory") != limits["memory"].ceil():
        problems.append(f"Memory {hc.get('Memory')}, manifest limit {limits['memory']}")
    if "cpu" in limits:
        milli = limits["cpu"].milli()
        quota, period = hc.get("CpuQuota") or 0, hc.get("CpuPeriod") or 0
        nano = hc.get("NanoCpus") or 0
        got_milli = nano // 1_000_000 if nano else (quota * 1000 // period if period else 0)
        if got_milli != max(milli, 1):
            problems.append(f"CPU limit {got_milli}m on the engine, manifest {limits['cpu']}")
    if (hc.get("RestartPolicy") or {}).get("Name") not in ("", "no"):
        problems.append(f"Docker restart policy {hc['RestartPolicy']}: restarts must be the agent's")
    return problems


# --- the test ---------------------------------------------------------------------------------------


def sync(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NODEAGENT, "--config", str(config), "sync"], capture_output=True, text=True, timeout=300, check=False
    )


def status(config: Path) -> dict[str, Any]:
    out = subprocess.run(
        [NODEAGENT, "--config", str(config), "status", "-o", "json"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    doc: dict[str, Any] = json.loads(out)
    return doc


@pytest.mark.parametrize("case", params())
def test_corpus_manifest_runs_as_it_says(
    case: Case,
    docker_runtime: docker_rt.DockerRuntime,
    test_image: str,
    image_tags: list[str],
    host_paths: list[str],
) -> None:
    require_corpus()
    ds = case.daemonset
    spec = ds.spec.template.spec
    node_name = f"corpus-{uuid.uuid4().hex[:8]}"
    root = Path(tempfile.mkdtemp(prefix="nodeagent-corpus-"))
    scoped = docker_rt.DockerRuntime(node_name=node_name)
    try:
        (root / "ds").mkdir()
        labels = json.dumps({**LINUX_LABELS, TEST_LABEL: "corpus"})
        config = root / "config.yaml"
        config.write_text(
            f"node: {{name: {node_name}, labels: {labels}}}\nsources:\n  - directory: ds\n"
            "stateDir: state\nbackoff: {initial: 10m, max: 10m, resetAfter: 10m}\n"
        )
        text = case.path.read_text()
        (root / "ds" / case.path.name).write_text(text)
        extra = supplied_objects(case)
        if extra:
            (root / "ds" / "zz-supplied.yaml").write_text(yaml.safe_dump_all(extra, sort_keys=False))
        tag_images(test_image, spec, image_tags)
        impossible = prepare_host_paths(spec, host_paths)

        if needs_pull(spec):
            first = sync(config)
            assert first.returncode == 1, first.stderr[-3000:]
            assert "Traceback" not in first.stderr, first.stderr[-3000:]
            doc = status(config)
            pods = [p for d in doc["daemonSets"] for p in d["pods"]]
            reasons = {str(p.get("status")) for p in pods} | {
                str(c.get("reason")) for p in pods for c in p.get("containers", [])
            }
            assert reasons & {"ErrImagePull", "ImagePullBackOff"}, doc
            (root / "ds" / case.path.name).write_text(without_pulls(text))
            (root / "state" / "failures.json").unlink(missing_ok=True)  # the image is "there" now

        result = sync(config)
        assert "Traceback" not in result.stderr, result.stderr[-3000:]
        if impossible:  # the documented behaviour: a clear refusal naming the path, nothing created
            assert result.returncode == 1
            assert "CreateContainerConfigError" in result.stdout, result.stdout[-3000:]
            assert any(path.rstrip("/") in result.stdout for path in impossible), result.stdout[-3000:]
            return
        created = scoped.list_managed()
        assert created, f"no container was created: {result.stdout[-2000:]} {result.stderr[-3000:]}"
        by_name = {c.name: c for c in all_containers(spec)}
        problems: list[str] = []
        checked = []
        for row in created:
            cname = row.labels.get("io.kubernetes.container.name", "")
            if cname not in by_name:
                continue  # a sandbox
            info = scoped.inspect(row.id)
            assert info is not None
            checked.append(cname)
            problems += [
                f"{cname}: {p}"
                for p in check_container(info, by_name[cname], spec, ds.metadata.namespace, node_name)
            ]
        assert checked, [r.name for r in created]
        assert problems == []
    finally:
        for c in scoped.list_managed():
            scoped.remove(c.id)
        scoped.close()
        shutil.rmtree(root, ignore_errors=True)
