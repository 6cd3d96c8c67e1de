"""A strict, bounded YAML reader that remembers where every value came from.

PyYAML's safe loader still accepts duplicate keys (last one wins), expands alias bombs
lazily, and overflows the stack on deep nesting. We therefore read the event stream
ourselves (iteratively, so nesting cannot exhaust the stack), resolve plain scalars with
YAML 1.2 core rules (no "Norway problem"), refuse every non-standard tag, and record the
line and column of each key and value so validation errors can point at them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from pipeline.errors import ECHO_LIMIT, Problem, SpecError, clip, echo
from pipeline.spec.paths import MAX_SPEC_BYTES

MAX_BYTES = MAX_SPEC_BYTES
MAX_DEPTH = 32
MAX_ALIASES = 100
MAX_NODES = 50_000

Path = tuple[str | int, ...]

_STANDARD_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
}
# Matched with fullmatch: '$' would also match before a trailing newline (`!!int "1\n"`).
_NULL = re.compile(r"~|null|Null|NULL|")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"[-+]?[0-9]+")
_OCT = re.compile(r"0o[0-7]+")
_HEX = re.compile(r"0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_SPECIAL_FLOAT = {".inf": math.inf, "+.inf": math.inf, "-.inf": -math.inf, ".nan": math.nan}


@dataclass
class Located:
    """A loaded document plus the source position of each value and mapping key."""

    data: Any
    file: str
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)


@dataclass
class _Node:
    kind: str  # "scalar" | "map" | "seq"
    mark: tuple[int, int]
    value: Any = None
    items: list[Any] = field(default_factory=list)  # seq: [_Node]; map: [(_Node, _Node)]
    tag: str | None = None
    plain: bool = False


def _mark(event: yaml.Event) -> tuple[int, int]:
    mark = event.start_mark
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)


def _fail(file: str, message: str, hint: str = "", mark: tuple[int, int] | None = None) -> SpecError:
    line, column = mark if mark else (None, None)
    return SpecError([Problem(message, file=file, line=line, column=column, hint=hint)])


def _decode(raw: bytes, file: str) -> str:
    if len(raw) > MAX_BYTES:
        raise _fail(file, f"the file is {len(raw):,} bytes; a spec may be at most {MAX_BYTES:,} bytes")
    if b"\x00" in raw:
        line = raw[: raw.index(b"\x00")].count(b"\n") + 1
        raise _fail(file, "the file contains NUL bytes; is it a binary file?", "a spec is UTF-8 YAML text", (line, 1))
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise _fail(file, f"the file is not UTF-8 text (bad byte at offset {exc.start})", "save the spec as UTF-8", (line, 1)) from None


def _events(text: str, file: str) -> list[yaml.Event]:
    """Parse to events with hard caps on depth, aliases and size before building anything."""
    events: list[yaml.Event] = []
    depth = 0
    aliases = 0
    documents = 0
    try:
        for event in yaml.parse(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise _fail(file, f"nesting is deeper than {MAX_DEPTH} levels", "a spec needs only a few levels", _mark(event))
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
            elif isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > MAX_ALIASES:
                    raise _fail(file, f"more than {MAX_ALIASES} aliases (*name)", "aliases are limited to stop alias bombs", _mark(event))
            elif isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise _fail(file, "the file holds more than one YAML document", "remove the extra '---' documents", _mark(event))
            events.append(event)
            if len(events) > MAX_NODES * 2:
                raise _fail(file, "the document is too large", f"at most {MAX_NODES:,} values")
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow anywhere: say which, and where
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        at = text.find(chr(code))  # the first one is the one refused (libyaml counts bytes, PyYAML characters: find it instead)
        place = (text.count("\n", 0, at) + 1, at - text.rfind("\n", 0, at)) if at >= 0 else None
        escape = f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
        raise _fail(file, f"the control character U+{code:04X} is not allowed in YAML",
                    f"delete it; inside a double-quoted string it can be written as {escape}", place) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = (mark.line + 1, mark.column + 1) if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise _fail(file, f"invalid YAML: {problem}", "check indentation, quoting and colons", where) from None
    except yaml.YAMLError as exc:
        raise _fail(file, f"invalid YAML: {exc}") from None
    return events


def _build(events: list[yaml.Event], file: str) -> _Node | None:
    """Turn events into a node tree without recursion; aliases share the anchored node."""
    anchors: dict[str, _Node] = {}
    stack: list[_Node] = []
    pending_key: list[_Node | None] = []
    root: _Node | None = None

    def attach(node: _Node) -> None:
        nonlocal root
        if not stack:
            root = node
            return
        parent = stack[-1]
        if parent.kind == "seq":
            parent.items.append(node)
        elif pending_key[-1] is None:
            pending_key[-1] = node
        else:
            parent.items.append((pending_key[-1], node))
            pending_key[-1] = None

    for event in events:
        if isinstance(event, yaml.AliasEvent):
            if event.anchor not in anchors:
                raise _fail(file, f"alias *{clip(str(event.anchor), ECHO_LIMIT)} has no matching anchor", "define &name before using *name", _mark(event))
            attach(anchors[event.anchor])
            continue
        if isinstance(event, yaml.ScalarEvent):
            node = _Node("scalar", _mark(event), event.value, tag=event.tag, plain=event.implicit[0] and not event.style)
        elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            kind = "map" if isinstance(event, yaml.MappingStartEvent) else "seq"
            node = _Node(kind, _mark(event), tag=event.tag)
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            stack.pop()
            if pending_key:
                pending_key.pop()
            continue
        else:
            continue
        if node.tag not in (None, "!") and node.tag not in _STANDARD_TAGS:
            raise _fail(file, f"the tag {clip(node.tag, ECHO_LIMIT)} is not allowed", "specs use plain YAML values only, without tags", node.mark)
        anchor = getattr(event, "anchor", None)
        if anchor:
            anchors[anchor] = node
        attach(node)
        if node.kind != "scalar":
            stack.append(node)
            if node.kind == "map":
                pending_key.append(None)
            else:
                pending_key.append(None)
    return root


def _scalar(node: _Node, file: str) -> Any:
    text: str = node.value
    tag = node.tag
    if tag in (None, "!") and not node.plain:
        return text
    if tag == "tag:yaml.org,2002:str":
        return text
    if _NULL.fullmatch(text) and tag in (None, "tag:yaml.org,2002:null"):
        return None
    if text in _BOOL and tag in (None, "tag:yaml.org,2002:bool"):
        return _BOOL[text]
    if tag in (None, "tag:yaml.org,2002:int"):
        if _INT.fullmatch(text):
            if len(text) > 30:
                raise _fail(file, "this number is too long", "use a number of at most 30 digits", node.mark)
            return int(text)
        if _OCT.fullmatch(text):
            return int(text[2:], 8)
        if _HEX.fullmatch(text):
            return int(text[2:], 16)
    if tag in (None, "tag:yaml.org,2002:float"):
        if _FLOAT.fullmatch(text):
            return float(text)
        if text.lower() in _SPECIAL_FLOAT:
            return _SPECIAL_FLOAT[text.lower()]
    if tag is not None:
        raise _fail(file, f"{echo(text)} is not a valid {echo(tag.rsplit(':', 1)[-1])}", mark=node.mark)
    return text


def _construct(root: _Node, located: Located) -> Any:
    """Build plain dicts/lists/scalars, recording positions; duplicate keys are errors."""
    budget = [MAX_NODES]

    def build(node: _Node, path: Path, active: set[int]) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise _fail(located.file, f"the document expands to more than {MAX_NODES:,} values", "aliases may not multiply the document", node.mark)
        located.values[path] = node.mark
        if node.kind == "scalar":
            return _scalar(node, located.file)
        if id(node) in active:
            raise _fail(located.file, "an alias refers to its own parent (a cycle)", mark=node.mark)
        active = active | {id(node)}
        if node.kind == "seq":
            return [build(item, path + (i,), active) for i, item in enumerate(node.items)]
        result: dict[str, Any] = {}
        for key_node, value_node in node.items:
            if key_node.kind != "scalar":
                raise _fail(located.file, "mapping keys must be plain text", mark=key_node.mark)
            key = _scalar(key_node, located.file)
            if key is None or isinstance(key, bool) or not isinstance(key, (str, int, float)):
                raise _fail(located.file, f"the key {echo(key_node.value)} is not text", "quote the key", key_node.mark)
            key = str(key)
            if key in result:
                first = located.keys.get(path + (key,))
                where = f" (first defined on line {first[0]})" if first else ""
                raise _fail(located.file, f"duplicate key {echo(key)}{where}", "each key may appear once in a mapping", key_node.mark)
            located.keys[path + (key,)] = key_node.mark
            result[key] = build(value_node, path + (key,), active)
        return result

    return build(root, (), set())


def load_yaml(raw: bytes, file: str, empty_ok: bool = False) -> Located:
    """Load one YAML document safely; raises SpecError with a position on any problem. A file with
    nothing in it (blank, or comments only) is refused, unless `empty_ok` (a stack overlay: `data` None)."""
    text = _decode(raw, file)
    located = Located(data=None, file=file)
    blank = not text.strip() or all(line.lstrip().startswith("#") or not line.strip() for line in text.splitlines())
    root = None if blank else _build(_events(text, file), file)
    if root is None or (root.kind == "scalar" and root.plain and not root.value):
        if empty_ok:
            return located
        raise _fail(file, "the file is empty", "a spec needs at least 'name' and 'stages'")
    located.data = _construct(root, located)
    return located
