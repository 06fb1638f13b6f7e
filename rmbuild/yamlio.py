"""YAML loading that remembers where each value came from.

Everything goes through PyYAML's *safe* loader. We compose the node graph first so that a
validation error on ``targets.npu.flags.opt_level`` can be reported with the line it sits on.

A spec or profile may come from anyone (a pull request, a downloaded example), so loading is
bounded by construction: the file size is checked before anything is parsed, the
composer refuses nesting deeper than :data:`MAX_DEPTH` before it recurses, and it counts the
nodes aliases stand for as it goes, refusing a document whose aliases expand to more than
:data:`MAX_ALIAS_NODES` nodes (a "billion laughs" bomb is a few hundred bytes that the line map
and the validator would otherwise walk as a billion nodes) and any recursive alias.
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from rmbuild.errors import SpecError

Loc = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)

MAX_BYTES = 1024 * 1024  # a spec or profile is a page of YAML; 1 MiB is generous
MAX_DEPTH = 64
MAX_ALIAS_NODES = 10_000


class _TooBig(yaml.YAMLError):
    """A limit of the loader was hit; not 'malformed', so it has its own message."""

    def __init__(self, message: str, mark: yaml.Mark | None) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> None:
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[loc + (key,)] = key_node.start_mark.line + 1
            _walk(value_node, loc + (key,), lines)
            # pydantic reports the key's line for "unknown field"; remember it separately.
            lines[loc + (key, "__key__")] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, loc + (i,), lines)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing duplicate keys (YAML says they are an error; PyYAML
    would silently keep the last one, so a second ``cpu:`` target would replace the first),
    deep nesting and alias bombs (see the module docstring)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        # Expanded size of every composed node (aliases counted as what they stand for).
        self._sizes: dict[int, int] = {}
        self._alias_nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            node = super().compose_node(parent, index)
            size = self._sizes.get(id(node))
            if size is None:  # its anchor is still being composed: `&a [*a]`
                raise _TooBig("recursive alias (an anchor used inside itself)", mark)
            self._alias_nodes += size
            if self._alias_nodes > MAX_ALIAS_NODES:
                raise _TooBig(
                    f"aliases expand to more than {MAX_ALIAS_NODES} nodes (an alias bomb?)", mark
                )
            return node
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _TooBig(f"nested more than {MAX_DEPTH} levels deep", mark)
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            children = []
        self._sizes[id(node)] = 1 + sum(self._sizes.get(id(c), 1) for c in children)
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base`: merged keys may be overridden, they are no duplicates
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read(path: Path) -> str:
    """The file's text, refusing one over MAX_BYTES before it is parsed (or read whole)."""
    try:
        with path.open("rb") as f:
            # Read one byte past the limit instead of trusting stat: /dev/zero has size 0.
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise SpecError("file not found", file=path) from None
    except OSError as exc:
        raise SpecError(f"cannot read: {exc}", file=path) from None
    if len(raw) > MAX_BYTES:
        raise SpecError(
            f"file is larger than {MAX_BYTES // 2**20} MiB; a spec or profile is a page of YAML",
            file=path,
            hint="is this the right file? model weights and data go in the model folder",
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"cannot read: {exc}", file=path) from None


def load_yaml(path: Path) -> tuple[Any, dict[Loc, int]]:
    """Parse ``path`` safely and return ``(data, line_of_each_location)``."""
    text = _read(path)
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return {}, {}
            data = loader.construct_document(node)
        finally:
            loader.dispose()
    except _TooBig as exc:
        line = exc.mark.line + 1 if exc.mark else None
        raise SpecError(exc.message, file=path, line=line) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or str(exc)
        raise SpecError(f"malformed YAML: {problem}", file=path, line=line) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"malformed YAML: {exc}", file=path) from None
    lines: dict[Loc, int] = {}
    _walk(node, (), lines)
    return data, lines


def line_of(lines: dict[Loc, int], loc: Loc) -> int | None:
    """The line of the deepest known prefix of ``loc``."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _place(loc: tuple, data: Any, missing: bool) -> tuple[Loc, list[str]]:
    """Split pydantic's ``loc`` into the place in the file and the union members it tried.

    For ``str | int | list[...]`` fields pydantic appends the member's name ('str', 'int') to
    the path; reporting ``flags.opt_level.str`` would send the user looking for a key that is
    not in the file. A part is a place only if it indexes the data (or names the missing field).
    """
    place: list[str | int] = []
    tried: list[str] = []
    node = data
    for i, part in enumerate(loc):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif not (missing and i == len(loc) - 1):
            if not str(part).startswith("function-"):
                tried.append(str(part))
            continue
        place.append(part)
    return tuple(place), tried


def did_you_mean(name: str, choices: typing.Iterable[str]) -> str:
    """ " (did you mean 'x'?)" for the closest of ``choices``, or "" when none is close."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _step(tp: Any, part: str | int) -> Any:
    """The type found at ``part`` inside a value of type ``tp`` (None when unknown)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for member in typing.get_args(tp):
            found = _step(member, part)
            if found is not None:
                return found
        return None
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        field = tp.model_fields.get(str(part))
        return field.annotation if field else None
    args = typing.get_args(tp)
    if origin is dict and len(args) == 2:
        return args[1]
    if origin in (list, tuple) and args:
        return args[0]
    return None


def _fields_at(model: type[BaseModel], loc: Loc) -> list[str]:
    """The field names a mapping at ``loc`` may have, for a did-you-mean."""
    tp: Any = model
    for part in loc:
        tp = _step(tp, part)
        if tp is None:
            return []
    members = (
        typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    )
    return [
        name
        for member in members
        if isinstance(member, type) and issubclass(member, BaseModel)
        for name in member.model_fields
    ]


def _unknown_rank(placed: tuple[Loc, list[str], Any], lines: dict[Loc, int]) -> tuple[int, int]:
    loc, _, err = placed
    if err["type"] == "extra_forbidden":
        return (0, line_of(lines, loc) or 0)
    return (1, 0)


def validate(model: type[M], data: Any, path: Path, lines: dict[Loc, int]) -> M:
    """Validate ``data`` into ``model``; the first error names file, line and field.

    Unknown fields are reported first: a misspelt ``profil:`` also makes
    ``profile`` missing, and the unknown field, with its did-you-mean, is what explains both.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        placed = [(*_place(e["loc"], data, e["type"] == "missing"), e) for e in errors]
        # Stable: other errors keep pydantic's order (the order of the model's fields).
        unknown_first = sorted(placed, key=lambda p: _unknown_rank(p, lines))
        loc, _, err = unknown_first[0]
        field = ".".join(str(part) for part in loc) or None
        msg = err["msg"]
        tried = [t for place, ts, _ in placed if place == loc for t in ts[-1:]]
        if err["type"] == "extra_forbidden":
            msg = "unknown field" + did_you_mean(loc[-1], _fields_at(model, loc[:-1]))
        elif len(tried) > 1:  # every member of a union failed: say what was allowed
            msg = f"wrong type: expected one of {', '.join(dict.fromkeys(tried))}"
        if "input" in err and err["type"] not in ("missing", "extra_forbidden"):
            msg = f"{msg} (got {err['input']!r})"
        others = len({place for place, _, _ in placed}) - 1
        context = [f"and {others} more problem(s) in the same file"] if others else None
        raise SpecError(
            msg, file=path, line=line_of(lines, loc), field=field, context=context
        ) from None
