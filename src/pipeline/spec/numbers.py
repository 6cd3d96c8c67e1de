"""Numbers in a spec are numbers: YAML's `true` is not a retry count.

Pydantic's lax mode (which the spec keeps, so `memory_mb: "512"` and `1e3` still work) turns
`true` into 1 and `false` into 0 for int and float fields, so `retries: true` silently meant one
retry. `refuse_booleans` finds every boolean given where the field's type wants a number but
not a boolean, at any depth of dicts and lists, and raises one located error per value. The spec
models run it on every field, so fields added later are covered without remembering to.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

Loc = tuple[str | int, ...]


def _members(annotation: Any) -> tuple[Any, ...]:
    """The alternatives of a union (`int | None`), the base of `Annotated[...]`, else itself."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _members(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return tuple(member for arg in get_args(annotation) for member in _members(arg))
    return (annotation,)


def _wants_number(annotation: Any) -> str:
    """'a whole number', 'a number' or '' (when a boolean is acceptable or no number is wanted)."""
    members = _members(annotation)
    if any(m is bool or m is Any or (get_origin(m) is Literal and any(isinstance(a, bool) for a in get_args(m))) for m in members):
        return ""
    if float in members:
        return "a number"
    return "a whole number" if int in members else ""


def _problems(value: Any, annotation: Any, loc: Loc) -> list[tuple[Loc, str, bool]]:
    if isinstance(value, bool):
        wanted = _wants_number(annotation)
        return [(loc, wanted, value)] if wanted else []
    found: list[tuple[Loc, str, bool]] = []
    for member in _members(annotation):
        origin, args = get_origin(member), get_args(member)
        if origin is dict and isinstance(value, dict) and len(args) == 2:
            for key, item in value.items():
                found += _problems(item, args[1], (*loc, key))
        elif origin is list and isinstance(value, list) and args:
            for index, item in enumerate(value):
                found += _problems(item, args[0], (*loc, index))
        else:
            continue
        break
    return found


def refuse_booleans(value: Any, annotation: Any, title: str) -> None:
    """Raise a ValidationError (locations relative to the field) for each boolean in `value` where
    `annotation` wants a number; nested models check their own fields."""
    problems = _problems(value, annotation, ())
    if problems:
        raise ValidationError.from_exception_data(title, [
            InitErrorDetails(
                type=PydanticCustomError("bool_for_number", "expected {wanted}, got the boolean {value}",
                                         {"wanted": wanted, "value": str(flag).lower()}),
                loc=loc,
                input=flag,
            )
            for loc, wanted, flag in problems
        ])
