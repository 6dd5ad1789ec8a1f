"""Strict parsing of YAML and JSON that may come from someone else: a duplicated key is an error
(YAML and JSON would silently keep the last one), and YAML aliases may not expand into more values
than a config could hold ("billion laughs" exhausts memory otherwise).

Errors are yaml.YAMLError with a line and column for YAML, ValueError for JSON, so callers that
already catch parse errors report these the same way.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

# Values a document may hold once its aliases are expanded. An experiment file holds a few hundred;
# a billion-laughs file of 1 KiB holds 10^9.
MAX_EXPANDED_NODES = 100_000
MERGE_TAG = "tag:yaml.org,2002:merge"


class StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses duplicate mapping keys and bounds alias expansion."""

    def compose_mapping_node(self, anchor: str | None) -> MappingNode:
        node = super().compose_mapping_node(anchor)
        first: dict[tuple[str, str], Node] = {}
        for key, _ in node.value:
            # Scalar keys only: the merge key `<<` may repeat, and a key that is itself a mapping
            # or list is not something a config holds.
            if not isinstance(key, ScalarNode) or key.tag == MERGE_TAG:
                continue
            seen = first.setdefault((key.tag, key.value), key)
            if seen is not key:
                raise ComposerError(
                    None, None,
                    f"duplicate key {key.value!r} (first at line {seen.start_mark.line + 1}); "
                    "YAML would keep only the last",
                    key.start_mark,
                )
        return node

    def compose_document(self) -> Node | None:
        node = super().compose_document()
        if node is not None and expanded_size(node, {}) > MAX_EXPANDED_NODES:
            raise ComposerError(
                None, None,
                f"its aliases expand to more than {MAX_EXPANDED_NODES} values (an alias bomb?)",
                node.start_mark,
            )
        return node


def expanded_size(node: Node, memo: dict[int, int]) -> int:
    """How many nodes `node` stands for once every alias is copied out, counted without copying
    (an aliased node is counted once and its size reused); stops growing past the bound."""
    known = memo.get(id(node))
    if known is not None:
        return known
    memo[id(node)] = 1  # a recursive alias (a node inside itself) counts once
    size = 1
    if isinstance(node, SequenceNode):
        children = node.value
    elif isinstance(node, MappingNode):
        children = [part for pair in node.value for part in pair]
    else:
        children = []
    for child in children:
        size += expanded_size(child, memo)
        if size > MAX_EXPANDED_NODES:
            break
    memo[id(node)] = size
    return size


def load_yaml(text: str) -> Any:
    """yaml.safe_load, strict: duplicate keys and alias bombs raise yaml.YAMLError."""
    return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - StrictLoader is a SafeLoader


class DuplicateKeyError(ValueError):
    """A JSON object names the same key twice."""


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(f"duplicate key {key!r} in one object; JSON would keep only the last")
        out[key] = value
    return out


def load_json(text: str) -> Any:
    """json.loads, strict: a duplicated key raises DuplicateKeyError (a ValueError, like
    json.JSONDecodeError)."""
    return json.loads(text, object_pairs_hook=_refuse_duplicates)
