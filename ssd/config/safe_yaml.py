"""YAML that a user or a dataset brings (``params.yaml``, ``--set`` values, a YOLO
``data.yaml``, a class-names file), parsed safely and bounded.

``yaml.safe_load`` builds no Python objects but its own; it still honours aliases, and nine
nested anchors of nine aliases each (the "billion laughs", 300 bytes) stand for 10^9
values: shared while parsed, they are expanded by the first thing that walks the result
(printing it, validating it, dumping it), which then takes GBs and minutes. Here the
document's size with every alias expanded is counted on the composed nodes (each shared
node once) and a document over :data:`MAX_EXPANDED` is refused before anything is built.
Ordinary anchors (a block reused a few times) stay fine.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

# Characters (plus one per node) of a document with its aliases expanded: 10 MB, some
# thousand times any params.yaml or data.yaml (a data.yaml naming 2000 classes is ~40 kB).
MAX_EXPANDED = 10_000_000


class YAMLTooLarge(yaml.YAMLError):
    """A document that would expand past :data:`MAX_EXPANDED`, or whose aliases refer to
    themselves; a ``yaml.YAMLError``, so every ``except yaml.YAMLError`` reports it."""


def expanded_size(root: Node, limit: int = MAX_EXPANDED) -> int:
    """The characters (plus one per node) of ``root`` with every alias expanded, counted
    without expanding anything (each node once); stops counting past ``limit``.

    Raises:
        YAMLTooLarge: an alias inside the node it names (a document of infinite size).
    """
    size: dict[int, int] = {}
    visiting: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in size:
            continue
        if isinstance(node, ScalarNode):
            size[key] = 1 + len(str(node.value))
            continue
        if isinstance(node, MappingNode):
            children = [child for pair in node.value for child in pair]
        else:
            children = list(node.value)
        if children_done:
            size[key] = min(limit + 1, 1 + sum(size[id(c)] for c in children))
            visiting.discard(key)
            continue
        if key in visiting:
            raise YAMLTooLarge("an alias (*name) refers to the block that holds it")
        visiting.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)
    return size[id(root)]


class BoundedSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a document larger than :data:`MAX_EXPANDED` with
    its aliases expanded."""

    def compose_document(self) -> Node | None:
        node: Node | None = super().compose_document()
        if node is not None and expanded_size(node) > MAX_EXPANDED:
            raise YAMLTooLarge(
                f"with its aliases (*name) expanded it holds more than {MAX_EXPANDED:,} "
                "characters (a 'billion laughs'?); write the values out instead of "
                "nesting aliases"
            )
        return node


def load_yaml(text: str) -> Any:
    """``yaml.safe_load(text)``, bounded (see the module docstring).

    Raises:
        yaml.YAMLError: not YAML, or too large once expanded (:class:`YAMLTooLarge`).
        RecursionError: nested too deeply.
    """
    return yaml.load(text, Loader=BoundedSafeLoader)  # a SafeLoader: plain YAML types only
