"""Read a Compose file's YAML as docker compose does: the YAML 1.2 core schema.

PyYAML implements YAML 1.1, where ``yes``, ``no``, ``on`` and ``off`` are booleans, ``22:22``
is a base-60 integer (1342) and ``2024-01-01`` a date.  docker compose reads YAML 1.2 (Go's
yaml.v3), where all of these are strings: ``environment: {DEBUG: on}`` sets ``DEBUG=on`` and
``ports: [22:22]`` publishes port 22.  So the scalars are typed here with the 1.2 core
schema's rules (and Go's integer literals: ``0o17``, ``017`` and ``0x1f``), while PyYAML
still does the parsing, anchors and aliases.

The values are built from PyYAML's node graph by this module rather than by PyYAML's
constructor, for two things the constructor cannot give: a duplicate key is an error (as in
yaml.v3) instead of the last one silently winning, and every value's line is remembered so
that an error about ``services.web.ports[0]`` can say where it is.  Merge keys (``<<: *base``,
the usual way to share settings between services) are honoured: explicit keys win, then the
merged mappings in order.
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .. import ComposeError

__all__ = ["KeyPath", "read_yaml"]

KeyPath = tuple["str | int", ...]

_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^[-+]?(?:0b[01_]+|0o[0-7_]+|0x[0-9a-fA-F_]+|[0-9][0-9_]*)$")
_FLOAT = re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)"
                    r"|\.(?:nan|NaN|NAN))$")

_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_PLAIN = "tag:pytest-minicontainer,2024:plain"  # an untagged, unquoted scalar: typed by _scalar
_TAGS = {_STR, _MERGE, _PLAIN, "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"}

#: Aliases make a small file expand into a huge value ("billion laughs"); no real compose
#: file comes near this many values.
_MAX_VALUES = 100_000


class _Loader(yaml.SafeLoader):
    """PyYAML's parser with only the merge key resolved implicitly: scalars are typed below."""

    yaml_implicit_resolvers: dict[Any, Any] = {}  # its own, empty: not SafeLoader's YAML 1.1 table


_Loader.add_implicit_resolver(_MERGE, re.compile(r"^<<$"), ["<"])
_Loader.add_implicit_resolver(_PLAIN, re.compile(r".*", re.DOTALL), None)


def _scalar(value: str) -> Any:
    """A plain scalar typed by the YAML 1.2 core schema (quoted ones are always strings)."""
    if _NULL.match(value):
        return None
    if _BOOL.match(value):
        return value.lower() == "true"
    if _INT.match(value):
        text = value.replace("_", "")
        sign = -1 if text.startswith("-") else 1
        digits = text.lstrip("+-")
        if digits[:2] in ("0b", "0o", "0x"):
            return sign * int(digits[2:], {"0b": 2, "0o": 8, "0x": 16}[digits[:2]])
        if len(digits) > 1 and digits.startswith("0") and set(digits) <= set("01234567"):
            return sign * int(digits, 8)  # Go's integer literals: 0644 is octal (file modes)
        return sign * int(digits)
    if _FLOAT.match(value):
        lowered = value.lower()
        if lowered.endswith("inf"):
            return -math.inf if lowered.startswith("-") else math.inf
        return math.nan if lowered.endswith("nan") else float(value)
    return value


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: dict[KeyPath, int] = {}
        self.count = 0

    def error(self, node: Node, message: str) -> ComposeError:
        return ComposeError(message, file=self.file, line=node.start_mark.line + 1)

    def value(self, node: Node, path: KeyPath, depth: int = 0) -> Any:
        self.count += 1
        if self.count > _MAX_VALUES or depth > 100:
            raise self.error(node, "the file expands to too many values (aliases nested too deep?)")
        self.lines.setdefault(path, node.start_mark.line + 1)
        if node.tag not in _TAGS:  # !reset, !override (merging several files), !!int...
            raise self.error(node, f"unsupported YAML tag {node.tag!r} (only plain YAML values are read)")
        if isinstance(node, ScalarNode):
            return _scalar(node.value) if node.tag == _PLAIN else node.value
        if isinstance(node, SequenceNode):
            return [self.value(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        if isinstance(node, MappingNode):
            return self.mapping(node, path, depth)
        raise self.error(node, f"unexpected YAML node {type(node).__name__}")  # pragma: no cover

    def mapping(self, node: MappingNode, path: KeyPath, depth: int) -> dict[str, Any]:
        explicit: dict[str, Any] = {}
        merges: list[Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merges.extend(value_node.value if isinstance(value_node, SequenceNode) else [value_node])
                continue
            key = _scalar(key_node.value) if key_node.tag == _PLAIN else key_node.value
            if not isinstance(key_node, ScalarNode) or not isinstance(key, str):
                shown = key_node.value if isinstance(key_node, ScalarNode) else "a collection"
                raise self.error(key_node, f"keys must be strings, not {shown!r} in "
                                           f"{_path_text(path) or 'the top level'} (quote it)")
            if key in explicit:
                raise self.error(key_node, f"duplicate key {key!r} in {_path_text(path) or 'the top level'}")
            explicit[key] = self.value(value_node, (*path, key), depth + 1)
        merged: dict[str, Any] = {}
        for source in merges:  # after the explicit keys: their lines are the ones to report
            if not isinstance(source, MappingNode):
                raise self.error(source, "a merge key (<<) takes a mapping or a list of mappings")
            for k, v in self.mapping(source, path, depth + 1).items():
                merged.setdefault(k, v)
        return {**merged, **explicit}


def _path_text(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def read_yaml(text: str, file: str) -> tuple[Any, dict[KeyPath, int]]:
    """The one document of ``text`` and the line of each value (by key path)."""
    try:
        documents = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        detail = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise ComposeError(f"not valid YAML: {detail}", file=file, line=line) from None
    except yaml.YAMLError as exc:
        raise ComposeError(f"not valid YAML: {exc}", file=file) from None
    documents = [d for d in documents if d is not None]
    if len(documents) > 1:
        raise ComposeError("holds several YAML documents (---); a compose file is one document",
                           file=file, line=documents[1].start_mark.line + 1)
    if not documents:
        return None, {}
    builder = _Builder(file)
    return builder.value(documents[0], ()), builder.lines
