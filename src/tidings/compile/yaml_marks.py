"""YAML to plain data, remembering where every key and value was written.

`load_marked` returns dicts, lists and scalars (never PyYAML objects) plus two maps from a path
inside the document (`("steps", 2, "send_email", "template")`) to a 1-based `(line, column)`:
one for values and sequence items, one for mapping keys. The loader uses them to locate a
pydantic error loc in the file. Problems (syntax errors, duplicate keys) are returned, never
raised.

The resolver is PyYAML's SafeLoader with two YAML 1.1 surprises removed, so that what authors
write comes through as they meant it:

- sexagesimal numbers: YAML 1.1 reads `9:00` as the integer 540 and `22:30` as 1350; here any
  scalar with a colon stays a string, so times of day (`until: 9:30`, `start: 22:00`) reach the
  model as text;
- YAML 1.1 booleans: `yes`/`no`/`on`/`off`/`y`/`n` are strings here (as in YAML 1.2); only
  `true`/`false` (any case) are booleans. The model's boolean fields still accept `yes`/`on`, but a
  contact attribute `country: no` stays the string "no".

Anchors, aliases and `<<` merge keys work as in PyYAML; a merged key overridden by the mapping's
own key is not a duplicate.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from tidings.errors import Location, Problem

PathKey = str | int
DocPath = tuple[PathKey, ...]
Mark = tuple[int, int]

_BOOL_TAG = "tag:yaml.org,2002:bool"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_DROPPED_TAGS = {_BOOL_TAG, _INT_TAG, _FLOAT_TAG}

# PyYAML's int and float patterns without the sexagesimal (base 60) alternatives.
_INT = re.compile(
    r"""^(?:[-+]?0b[0-1_]+
    |[-+]?0[0-7_]+
    |[-+]?(?:0|[1-9][0-9_]*)
    |[-+]?0x[0-9a-fA-F_]+)$""",
    re.X,
)
_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
    |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")


class _MarkedLoader(yaml.SafeLoader):
    """SafeLoader whose implicit resolvers skip sexagesimal numbers and YAML 1.1 booleans."""

    # Copied per class so SafeLoader's own table is left untouched for other users of PyYAML.
    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in _DROPPED_TAGS]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


_MarkedLoader.add_implicit_resolver(_BOOL_TAG, _BOOL, list("tTfF"))
_MarkedLoader.add_implicit_resolver(_INT_TAG, _INT, list("-+0123456789"))
_MarkedLoader.add_implicit_resolver(_FLOAT_TAG, _FLOAT, list("-+0123456789."))


@dataclass
class MarkedDocument:
    """A parsed YAML document: plain data, where each part was written, and problems found."""

    data: Any
    values: dict[DocPath, Mark] = field(default_factory=dict)
    keys: dict[DocPath, Mark] = field(default_factory=dict)
    block_scalars: dict[DocPath, Mark] = field(default_factory=dict)  # where the text starts
    problems: list[Problem] = field(default_factory=list)

    def known(self, path: DocPath) -> DocPath:
        """The longest prefix of `path` that was written in the document."""
        for end in range(len(path), -1, -1):
            if path[:end] in self.values:
                return path[:end]
        return ()

    def mark(self, path: DocPath, *, key: bool = False) -> Mark:
        """Where `path` (or its nearest written ancestor) starts; `key=True` for the key itself."""
        if key and path in self.keys:
            return self.keys[path]
        return self.values.get(self.known(path), (1, 1))


def load_marked(text: str, file: str) -> MarkedDocument:
    """Parse one YAML document; syntax errors and duplicate keys come back as problems."""
    try:
        loader = _MarkedLoader(text)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow, e.g. a control
        before = text[: exc.position]
        line, column = before.count("\n") + 1, exc.position - before.rfind("\n")
        message = f"invalid YAML: character #x{exc.character:04x} is not allowed"
        return MarkedDocument(
            data=None, problems=[Problem(Location(file, line, column), "", message)]
        )
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        return MarkedDocument(data=None, problems=[_syntax_problem(exc, file)])
    except yaml.YAMLError as exc:  # e.g. "expected a single document in the stream"
        return MarkedDocument(data=None, problems=[Problem(Location(file, 1, 1), "", str(exc))])
    finally:
        loader.dispose()
    if node is None:
        return MarkedDocument(data=None, values={(): (1, 1)})
    builder = _Builder(loader, file)
    try:
        data = builder.build(node, ())
    except yaml.MarkedYAMLError as exc:  # a scalar PyYAML cannot construct, e.g. a bad !!binary
        builder.doc.problems.append(_syntax_problem(exc, file))
        data = None
    builder.doc.data = data
    return builder.doc


def _syntax_problem(exc: yaml.MarkedYAMLError, file: str) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    what = exc.problem or exc.context or "cannot be parsed"
    if exc.context and exc.problem:
        # PyYAML splits some messages in two: "expected a single document" / "but found ...".
        joined = exc.problem.startswith("but ")
        what = f"{exc.context}, {exc.problem}" if joined else f"{exc.problem} ({exc.context})"
    return Problem(Location(file, line, column), "", f"invalid YAML: {what}")


class _Builder:
    """Turns a composed node tree into plain data, filling in a MarkedDocument as it goes."""

    def __init__(self, loader: _MarkedLoader, file: str) -> None:
        self.loader = loader
        self.file = file
        self.doc = MarkedDocument(data=None)
        self._open: set[int] = set()  # nodes being built, to refuse recursive aliases

    def build(self, node: Node, path: DocPath) -> Any:
        self.doc.values[path] = _mark(node)
        if isinstance(node, ScalarNode):
            if node.style in ("|", ">"):
                self.doc.block_scalars[path] = _block_text_start(node)
            return self.loader.construct_object(node, deep=True)
        if id(node) in self._open:
            self._problem(node, path, "an alias refers to the node that contains it")
            return None
        self._open.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            if isinstance(node, MappingNode):
                return self._mapping(node, path)
            return self.loader.construct_object(node, deep=True)
        finally:
            self._open.discard(id(node))

    def _mapping(self, node: MappingNode, path: DocPath) -> dict[Any, Any]:
        own = sum(1 for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge")
        self.loader.flatten_mapping(node)  # merged pairs first, then the mapping's own
        merged = len(node.value) - own
        result: dict[Any, Any] = {}
        first_seen: dict[Hashable, Mark] = {}
        for index, (key_node, value_node) in enumerate(node.value):
            key = self.loader.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                self._problem(key_node, path, "a mapping key must be a plain value")
                continue
            if not isinstance(key, str):
                key = _source_text(key_node, key)
            at = _mark(key_node)
            if key in first_seen and index >= merged and first_seen[key] != (0, 0):
                line, _ = first_seen[key]
                self._problem(
                    key_node, (*path, key), f"duplicate key {key!r} (first written at line {line})"
                )
                continue
            # Keys that came from a `<<` merge may be overridden once without complaint.
            first_seen[key] = (0, 0) if index < merged else at
            self.doc.keys[(*path, key)] = at
            result[key] = self.build(value_node, (*path, key))
        return result

    def _problem(self, node: Node, path: DocPath, message: str) -> None:
        line, column = _mark(node)
        self.doc.problems.append(
            Problem(Location(self.file, line, column), format_path(path), message)
        )


def _mark(node: Node) -> Mark:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _block_text_start(node: ScalarNode) -> Mark:
    """Where a `|` or `>` scalar's text begins: the line after the indicator (its line 1, even
    when blank), at the indentation of the first line that has text."""
    lines = (node.start_mark.buffer or "").split("\n")
    first = node.start_mark.line + 1  # 0-based index of the line after the indicator
    for text in lines[first:]:
        if text.strip(" \t\r\0"):
            return first + 1, len(text) - len(text.lstrip(" ")) + 1
    return _mark(node)


def _source_text(node: Node, value: Any) -> Any:
    """Keys like `true:` or `1:` keep the text the author wrote: a key is a name, and a path
    part that is an int always means a list index."""
    return node.value if isinstance(node, ScalarNode) else value


def format_path(path: DocPath) -> str:
    """Write a document path the way authors read it: `steps[2].send_email.template`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


_ABSENT = object()


def child(node: Any, part: PathKey) -> Any:
    """`node[part]` for a mapping key or a list index in range; `_ABSENT` otherwise."""
    if isinstance(node, Mapping):
        return node.get(part, _ABSENT)
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return _ABSENT


def is_absent(value: Any) -> bool:
    """Whether `child` found nothing."""
    return value is _ABSENT


def value_at(data: Any, path: DocPath, default: Any = None) -> Any:
    """The value at `path` in plain data, or `default` when the path is not there."""
    node = data
    for part in path:
        node = child(node, part)
        if node is _ABSENT:
            return default
    return node


def fit_path(data: Any, path: DocPath) -> DocPath:
    """`path` without the parts the document does not have, e.g. the `[0]` of a one-item
    shorthand (`if: "x"` stands for `if: ["x"]`)."""
    out: list[PathKey] = []
    node = data
    for part in path:
        found = child(node, part)
        if found is not _ABSENT:
            node = found
            out.append(part)
    return tuple(out)
