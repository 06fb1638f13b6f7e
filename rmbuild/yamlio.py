"""YAML loading that remembers where each value came from.

Everything goes through PyYAML's *safe* loader. We compose the node graph first so that a
validation error on ``targets.npu.flags.opt_level`` can be reported with the line it sits on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from rmbuild.errors import SpecError

Loc = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


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
    would silently keep the last one, so a second ``cpu:`` target would replace the first)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
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


def load_yaml(path: Path) -> tuple[Any, dict[Loc, int]]:
    """Parse ``path`` safely and return ``(data, line_of_each_location)``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("file not found", file=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read: {exc}", file=path) from None
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return {}, {}
            data = loader.construct_document(node)
        finally:
            loader.dispose()
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


def validate(model: type[M], data: Any, path: Path, lines: dict[Loc, int]) -> M:
    """Validate ``data`` into ``model``; the first error names file, line and field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        placed = [(*_place(e["loc"], data, e["type"] == "missing"), e) for e in errors]
        loc, _, err = placed[0]
        field = ".".join(str(part) for part in loc) or None
        msg = err["msg"]
        tried = [t for place, ts, _ in placed if place == loc for t in ts[-1:]]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif len(tried) > 1:  # every member of a union failed: say what was allowed
            msg = f"wrong type: expected one of {', '.join(dict.fromkeys(tried))}"
        if "input" in err and err["type"] not in ("missing", "extra_forbidden"):
            msg = f"{msg} (got {err['input']!r})"
        others = len({place for place, _, _ in placed}) - 1
        context = [f"and {others} more problem(s) in the same file"] if others else None
        raise SpecError(
            msg, file=path, line=line_of(lines, loc), field=field, context=context
        ) from None
