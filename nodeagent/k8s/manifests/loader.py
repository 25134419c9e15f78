"""The YAML dialect: libyaml's CSafeLoader with Kubernetes' resolvers, bounded before construction.

A document is refused, with its field path, when its aliases expand too far (an alias bomb), when it
aliases itself, or when it repeats a mapping key (kubectl's strict decoding rejects duplicates)."""

from __future__ import annotations

import json

import yaml

from nodeagent.k8s import model


class _Loader(yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader):  # type: ignore[misc]
    """YAML 1.1 like Kubernetes' decoder, but timestamps and `=` stay strings (they are never dates).

    On libyaml's parser when PyYAML has it: about ten times faster, which is most of a no-op
    `nodeagent sync` over fifty manifests. libyaml caps nesting at 1000 levels (a syntax error)."""


_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, rx)
        for tag, rx in resolvers
        if tag not in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

LOADER: type[yaml.SafeLoader] = _Loader  # the dialect, for `serve` (which keeps raw documents)


# At most this many nodes may be reached through aliases in one document, beyond the nodes written
# out. Real manifests use a handful of anchors; an "alias bomb" (nested anchors, each aliased ten times)
# expands nine lines into billions of nodes when the document is walked or re-serialised.
MAX_ALIAS_EXPANSION = 10_000


class DocumentBoundError(yaml.YAMLError):
    """A document that is refused before it is constructed: excessive aliasing, a recursive alias,
    or a duplicate mapping key. `path` is the field path where it was found."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def _key_text(node: yaml.Node) -> str | None:
    return node.value if isinstance(node, yaml.ScalarNode) else None


def _check_node_graph(root: yaml.Node, limit: int = MAX_ALIAS_EXPANSION) -> None:
    """Refuse a composed document whose aliases expand too far, that aliases itself, or that repeats a
    mapping key (kubectl's strict decoding rejects duplicates; PyYAML would let the last one win).

    Linear in the nodes written out: each node is walked once and an alias use adds its (memoised)
    expanded size without being walked again.
    """
    size: dict[int, int] = {}  # id(node) -> nodes in its full expansion
    active: set[int] = set()  # nodes on the current path (an alias to one of them is a cycle)
    expanded = 0  # nodes reached through aliases
    # iterative post-order walk: (node, path, children done?)
    stack: list[tuple[yaml.Node, str, bool]] = [(root, "", False)]
    while stack:
        node, path, done = stack.pop()
        nid = id(node)
        if done:
            children = _children(node, path)
            size[nid] = 1 + sum(size[id(c)] for c, _ in children)
            active.discard(nid)
            continue
        if nid in size:  # a second use: an alias
            expanded += size[nid]
            if expanded > limit:
                raise DocumentBoundError(
                    path,
                    f"excessive YAML aliasing: aliases expand to more than {limit} nodes (an alias bomb?)",
                )
            continue
        if nid in active:
            raise DocumentBoundError(path, "recursive YAML alias: a node contains an alias to itself")
        active.add(nid)
        stack.append((node, path, True))
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for k, _ in node.value:
                text = _key_text(k)
                if text is None or text == "<<":
                    continue
                if text in seen:
                    line = k.start_mark.line + 1 if k.start_mark is not None else 0
                    raise DocumentBoundError(
                        _join_path(path, text),
                        f"duplicate key {json.dumps(text)} (line {line}; also on line {seen[text]})",
                    )
                seen[text] = k.start_mark.line + 1 if k.start_mark is not None else 0
        for sub, sub_path in reversed(_children(node, path)):
            stack.append((sub, sub_path, False))


def _children(node: yaml.Node, path: str) -> list[tuple[yaml.Node, str]]:
    if isinstance(node, yaml.SequenceNode):
        return [(c, f"{path}[{i}]") for i, c in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        out: list[tuple[yaml.Node, str]] = []
        for k, val in node.value:
            name = _key_text(k)
            out.append((k, path))
            out.append((val, _join_path(path, name if name is not None else "<key>")))
        return out
    return []


def _join_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _bounded_construct_document(self: yaml.SafeLoader, node: yaml.Node) -> object:
    _check_node_graph(node)
    return yaml.SafeLoader.construct_document(self, node)


_Loader.construct_document = _bounded_construct_document


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """json.loads hook: a repeated key sends the text to the YAML reader, which names key and path."""
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate key")
    return out


def parse_stream(text: str, source: str) -> tuple[list[object], model.Problem | None]:
    """All documents of a YAML (or JSON) stream, and the syntax error that stopped it, if any."""
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            return [json.loads(text, object_pairs_hook=_no_duplicate_keys)], None
        except (ValueError, RecursionError):
            pass  # not plain JSON: YAML either reads it or explains what is wrong, with a position
    docs: list[object] = []
    try:
        for doc in yaml.load_all(text, Loader=LOADER):
            docs.append(doc)
    except DocumentBoundError as exc:
        return docs, model.Problem(source, len(docs), "", "", exc.path, exc.message)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        what = exc.problem or exc.context or "invalid YAML"
        return docs, model.Problem(source, len(docs), "", "", "", f"YAML syntax error at {where}{what}")
    except (yaml.YAMLError, RecursionError, ValueError, TypeError) as exc:
        return docs, model.Problem(source, len(docs), "", "", "", f"YAML syntax error: {exc}")
    return docs, None
