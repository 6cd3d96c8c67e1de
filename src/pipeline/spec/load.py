"""Load a spec file (plus an optional stack overlay) into a validated `PipelineSpec`.

Every problem becomes a `Problem` naming file, line, column and field path, and saying
what would be valid; callers never see a pydantic or YAML traceback.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from pipeline.errors import Problem, SpecError, echo, odd_character
from pipeline.spec.model import PipelineSpec, wiring_problems
from pipeline.spec.paths import FileTooLargeError, NotRegularFileError, UnsafePathError, read_regular_file
from pipeline.spec.safe_yaml import MAX_BYTES, Located, load_yaml
from pipeline.spec.safe_yaml import Path as FieldPath
from pipeline.spec.shapes import describe

STACK_PATTERN = re.compile(r"[a-z][a-z0-9-]{0,15}")  # fullmatch: '$' would accept a trailing newline
_PLAIN_KEY = re.compile(r"[^\s.\[\]'\"]{1,60}")
DEFAULT_STACK = "default"


@dataclass(frozen=True)
class Position:
    file: str
    line: int
    column: int


@dataclass
class LoadedSpec:
    """A validated spec and where it came from."""

    spec: PipelineSpec
    path: Path
    stack: str
    positions: dict[FieldPath, Position]

    @property
    def base_dir(self) -> Path:
        return self.path.parent


def format_path(path: FieldPath) -> str:
    """`stages[0].environment.KEY`; a key that is long or holds spaces, dots, quotes or control
    characters is shown quoted and shortened, `tags['a\\n']`, so a path is always one short line."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(str(part)) and str(part).isascii() and str(part).isprintable():
            text += f".{part}" if text else str(part)
        else:
            text += f"[{echo(str(part))}]"
    return text


# Reads a spec or overlay file: `read_regular_file`'s contract (path, size limit -> bytes or its errors).
FileReader = Callable[[Path, int], bytes]


def _read(path: Path, read: FileReader = read_regular_file) -> bytes:
    """The spec or an overlay: a regular file of at most MAX_BYTES, read without blocking or
    reading more than that (a FIFO, /dev/zero or /dev/urandom must not hang or fill memory).
    `read` lets the plan cache hand over the very bytes its key was computed from."""
    try:
        return read(path, MAX_BYTES)
    except FileTooLargeError as exc:
        raise SpecError([Problem(f"the file is {exc.size:,} bytes{' or more' if exc.grew else ''}; a spec may be at most {MAX_BYTES:,} bytes", file=str(path),
                                 hint="a spec is a short YAML file")]) from None
    except NotRegularFileError as exc:
        raise SpecError([Problem(f"this is {exc.kind}, not a spec file", file=str(path), hint="pass the path to a pipeline.yaml file")]) from None
    except FileNotFoundError:
        raise SpecError([Problem("no such file", file=str(path), hint="pass the path to your pipeline.yaml")]) from None
    except IsADirectoryError:
        raise SpecError([Problem("this is a directory, not a spec file", file=str(path), hint="pass the path to a pipeline.yaml file")]) from None
    except OSError as exc:
        raise SpecError([Problem(f"cannot read the file: {exc.strerror}", file=str(path))]) from None
    except ValueError as exc:  # e.g. a NUL byte in the path
        raise SpecError([Problem(f"cannot read the file: {exc}", file=echo(str(path)))]) from None


def _positions(located: Located) -> dict[FieldPath, Position]:
    return {p: Position(located.file, *mark) for p, mark in located.values.items()}


def _key_positions(located: Located) -> dict[FieldPath, Position]:
    return {p: Position(located.file, *mark) for p, mark in located.keys.items()}


class _Merge:
    """Deep-merge an overlay over a spec: mappings merge, lists of named items merge by name,
    anything else is replaced. Positions follow the values so errors point at the right file."""

    def __init__(self, values: dict[FieldPath, Position], keys: dict[FieldPath, Position]):
        self.values, self.keys = values, keys

    def _replace(self, base_path: FieldPath, over_path: FieldPath, over_values: dict[FieldPath, Position], over_keys: dict[FieldPath, Position]) -> None:
        n = len(base_path)
        for table in (self.values, self.keys):
            for p in [p for p in table if p[:n] == base_path and len(p) > n]:
                del table[p]
        m = len(over_path)
        for source, target in ((over_values, self.values), (over_keys, self.keys)):
            for p, pos in source.items():
                if p[:m] == over_path:
                    target[base_path + p[m:]] = pos

    def merge(self, base: Any, over: Any, base_path: FieldPath, over_path: FieldPath, ov: dict[FieldPath, Position], ok: dict[FieldPath, Position]) -> Any:
        if isinstance(base, dict) and isinstance(over, dict):
            if len(base_path) == 2 and base_path[0] == "stages" and isinstance(base.get("trigger"), dict) and isinstance(over.get("trigger"), dict):
                self._same_kind(base, over, base_path, over_path, ok)
            result = dict(base)
            for key, value in over.items():
                if key in base:
                    result[key] = self.merge(base[key], value, base_path + (key,), over_path + (key,), ov, ok)
                else:
                    result[key] = value
                    self._replace(base_path + (key,), over_path + (key,), ov, ok)
                    if over_path + (key,) in ok:
                        self.keys[base_path + (key,)] = ok[over_path + (key,)]
            return result
        if _named_list(base) and _named_list(over):
            result_list = list(base)
            index = {item["name"]: i for i, item in enumerate(base)}
            for j, item in enumerate(over):
                if item["name"] in index:
                    i = index[item["name"]]
                    result_list[i] = self.merge(base[i], item, base_path + (i,), over_path + (j,), ov, ok)
                else:
                    result_list.append(item)
                    self._replace(base_path + (len(result_list) - 1,), over_path + (j,), ov, ok)
            return result_list
        self._replace(base_path, over_path, ov, ok)
        if over_path in ov:
            self.values[base_path] = ov[over_path]
        return over


    def _same_kind(self, base: dict[str, Any], over: dict[str, Any], base_path: FieldPath, over_path: FieldPath,
                   ok: dict[FieldPath, Position]) -> None:
        """A stage's trigger keeps its kind in every stack: merged key by key, an overlay naming another kind
        would leave a trigger of two kinds, reported against the spec's line; say it at the overlay's line."""
        had = [kind for kind in TRIGGER_KINDS if kind in base["trigger"]]
        new = [kind for kind in TRIGGER_KINDS if kind in over["trigger"] and kind not in had]
        if had and new:
            at = ok.get(over_path + ("trigger", new[0]))
            was = self.keys.get(base_path + ("trigger", had[0]))
            where = f" ({was.file}:{was.line})" if was else ""
            raise SpecError([Problem(
                f"an overlay cannot change the trigger of stage {echo(str(base.get('name')))} from {had[0]!r}{where} to {new[0]!r}",
                file=at.file if at else "", line=at.line if at else None, column=at.column if at else None,
                path=format_path(base_path + ("trigger", new[0])),
                hint="a stage is triggered the same way in every stack: change the trigger in the spec itself, or add a stage "
                     "of that kind in the overlay")])


TRIGGER_KINDS = ("stream", "objects", "schedule", "http")


def _named_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(i, dict) and isinstance(i.get("name"), str) for i in value)


def overlay_path(spec_path: Path, stack: str) -> Path:
    return spec_path.parent / "stacks" / f"{stack}.yaml"


def available_stacks(spec_path: Path) -> list[str]:
    folder = spec_path.parent / "stacks"
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model class that owns the mapping at `loc` (for 'did you mean')."""
    model: Any = PipelineSpec
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part) or next((f for f in model.model_fields.values() if f.alias == part), None)
        if field is None:
            return None
        model = _unwrap_model(field.annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _unwrap_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _unwrap_model(arg)
        if found is not None:
            return found
    return None


def _field_names(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _union_tag(part: str) -> bool:
    return part in {"int", "float", "str", "bool", "[key]"} or part.startswith(("literal[", "constrained-", "function-"))


def _problem_for(error: Any, values: dict[FieldPath, Position], keys: dict[FieldPath, Position], default_file: str) -> Problem:
    loc = tuple(error["loc"])
    # pydantic adds the union member's name for unions ("int", "literal['auto']") and "[key]" for
    # dict keys; drop those non-field parts (exact names: a field like 'intermediate_days' stays).
    path: FieldPath = tuple(p for p in loc if isinstance(p, int) or not _union_tag(str(p)))
    kind = error["type"]
    message, hint = error["msg"], ""
    is_key = "[key]" in loc
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, UnsafePathError):
        message, hint = cause.message, cause.hint
        pos = _nearest(path, values)
    elif kind == "extra_forbidden":
        model = _model_at(path[:-1])
        allowed = _field_names(model) if model else []
        key = str(path[-1])
        close = difflib.get_close_matches(key, allowed, n=1) if len(key) <= 60 else []
        message = f"unknown key {echo(key)}{odd_character(key)}" + (f"; did you mean {close[0]!r}?" if close else "")
        hint = f"valid keys here: {', '.join(allowed)}" if allowed else ""
        pos = keys.get(path) or values.get(path)
    elif kind == "missing":
        message = f"missing required field {path[-1]!r}"
        pos = _nearest(path[:-1], values)
    else:
        if message.startswith("Value error, "):
            message = message[len("Value error, "):]
        if kind.startswith("literal_error"):
            hint = "expected " + str(error.get("ctx", {}).get("expected", ""))
        pos = (keys.get(path) if is_key else None) or _nearest(path, values)
        shaped = None if is_key else describe(kind, path, error.get("input"), _model_at)  # the valid shape and an example
        if shaped:
            message, hint = shaped
            kind = "described"
    if kind in {"int_parsing", "int_type", "float_parsing", "bool_parsing", "string_type", "dict_type", "list_type", "int_from_float",
                "string_pattern_mismatch"}:
        got = error.get("input")
        message = f"{message} (got {echo(got)}){odd_character(got)}" if not isinstance(got, (dict, list)) else f"{message} (got a {'mapping' if isinstance(got, dict) else 'list'})"
    return Problem(
        message,
        file=pos.file if pos else default_file,
        line=pos.line if pos else None,
        column=pos.column if pos else None,
        path=format_path(path),
        hint=hint,
    )


def _nearest(path: FieldPath, values: dict[FieldPath, Position]) -> Position | None:
    for n in range(len(path), -1, -1):
        if path[:n] in values:
            return values[path[:n]]
    return None


def load_spec(path: str | Path, stack: str | None = None, read: FileReader = read_regular_file) -> LoadedSpec:
    """Read, merge and validate; raises SpecError listing every problem found. `read` reads the
    spec and overlay files (the plan cache passes one that returns the bytes it keyed on)."""
    spec_path = Path(path)
    located = load_yaml(_read(spec_path, read), str(spec_path))
    # The project folder: where the spec really lives (paths in it are relative to that, and
    # everything they name must stay inside it; see spec.paths).
    real_spec = Path(os.path.realpath(spec_path))
    project = real_spec.parent
    if not isinstance(located.data, dict):
        raise SpecError([Problem("the top level of a spec must be a mapping (key: value lines)", file=str(spec_path), line=1, column=1, hint="start with 'name: my-pipeline'")])
    data: dict[str, Any] = located.data
    values, keys = _positions(located), _key_positions(located)

    stack_name = stack or DEFAULT_STACK
    if not STACK_PATTERN.fullmatch(stack_name):
        raise SpecError([Problem(f"{echo(stack_name)} is not a valid stack name{odd_character(stack_name)}",
                                 hint="1-16 lowercase letters, digits or hyphens, starting with a letter")])
    if stack is not None:
        over_file = overlay_path(spec_path, stack)
        if not over_file.exists():
            known = available_stacks(spec_path)
            hint = f"available stacks: {', '.join(known)}" if known else f"create {over_file} to define it"
            raise SpecError([Problem(f"no overlay for stack {echo(stack)}", file=str(over_file), hint=hint)])
        overlay = load_yaml(_read(over_file, read), str(over_file), empty_ok=True)
        if overlay.data is not None:  # (an overlay with nothing in it, or only comments, changes nothing)
            if not isinstance(overlay.data, dict):
                raise SpecError([Problem("an overlay's top level must be a mapping", file=str(over_file), line=1, column=1)])
            merger = _Merge(values, keys)
            data = merger.merge(data, overlay.data, (), (), _positions(overlay), _key_positions(overlay))

    try:
        spec = PipelineSpec.model_validate(data, context={"base_dir": project})
    except ValidationError as exc:
        raise SpecError([_problem_for(e, values, keys, str(spec_path)) for e in exc.errors()]) from None
    loaded = LoadedSpec(spec=spec, path=real_spec, stack=stack_name, positions=values)
    wiring = wiring_problems(spec)
    if wiring:
        raise spec_problems(loaded, wiring)
    return loaded


def spec_problems(loaded: LoadedSpec, problems: Sequence[tuple[Any, ...]], prefix: str = "") -> SpecError:
    """Turn (field path, message[, hint]) triples into a located SpecError."""
    located = []
    for field_path, message, *rest in problems:
        pos = _nearest(tuple(field_path), loaded.positions)
        located.append(Problem(
            prefix + message,
            file=pos.file if pos else str(loaded.path),
            line=pos.line if pos else None,
            column=pos.column if pos else None,
            path=format_path(tuple(field_path)),
            hint=rest[0] if rest else "",
        ))
    return SpecError(located)
