"""`pipeline diff`: what a change does to each cloud's resources and monthly bill.

Both sides are comparisons in the documented `compare --format json` shape: one computed now from
a spec (and stack), the other computed from another spec or stack, or read from a file saved
earlier (e.g. on the main branch), as Infracost users do on every pull request. Resources are
paired by role, type and logical name (as Pulumi pairs them, by URN); a pair whose inputs differ is
"changed", and the diff names each input that changed, old -> new (secrets stay masked as the JSON
plan masks them). Between two stacks, names that embed the stack (bucket names, ARNs, URNs, the
stack's name in a description) differ everywhere by design: those differences are set aside and
counted, so only what really differs is shown. Cost is compared per billing line (role and item). A
threshold (`--fail-above 5` USD or `10%` of the baseline) turns a cost rise into a failing CI step;
`--exit-code` turns any change into exit code 3.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.plan import group_parts, short_type
from pipeline.summary import clouds_phrase, money, percent, signed_money

DIFF_SCHEMA_VERSION = 1


class DiffInputError(ValueError):
    """A baseline file that is not a saved comparison (exit 2)."""


@dataclass(frozen=True)
class Threshold:
    """How much a monthly cost may rise: `value` USD, or `value` percent of the baseline."""

    value: float
    percent: bool

    @classmethod
    def parse(cls, text: str) -> Threshold:
        match = re.fullmatch(r"\s*\$?\s*(\d+(?:\.\d+)?)\s*(%?)\s*", text)
        if not match:
            raise ValueError(f"{text!r} is not an amount: use USD like 5 or 12.50, or a percentage like 10%")
        return cls(float(match.group(1)), bool(match.group(2)))

    def exceeded(self, delta: float, base: float) -> bool:
        if self.percent:
            return delta > 0 and (base <= 0 or delta / base * 100 > self.value)
        return delta > self.value

    def __str__(self) -> str:
        return f"{self.value:g}%" if self.percent else f"${self.value:,.2f}"


@dataclass(frozen=True)
class InputChange:
    """One input of a changed resource: its path ("memorySize", "environment.variables.X", "policy.Statement[0].Action")
    and the values before and after (None: absent on that side)."""

    path: str
    old: Any
    new: Any


@dataclass(frozen=True)
class ResourceChange:
    change: str  # "added" | "removed" | "changed"
    role: str
    kind: str
    type: str
    name: str  # physical name (the head's; the baseline's for a removed resource)
    logical: str = ""
    inputs: tuple[InputChange, ...] = ()  # for "changed": what changed (empty when the baseline carries no inputs)
    part_of: tuple[str, str] = ("", "")  # (type, name) of the resource this one is a part of (a bucket's policy), see plan.group_parts

    def to_dict(self) -> dict[str, Any]:
        return {"change": self.change, "role": self.role, "kind": self.kind, "type": self.type, "name": self.name, "logical": self.logical,
                "part_of": {"type": self.part_of[0], "name": self.part_of[1]} if self.part_of[0] else None,
                "inputs": [{"path": i.path, "old": i.old, "new": i.new} for i in self.inputs]}


@dataclass(frozen=True)
class LineDelta:
    role: str
    item: str
    base_usd: float
    head_usd: float

    @property
    def delta(self) -> float:
        return self.head_usd - self.base_usd


@dataclass
class CloudDiff:
    cloud: str
    title: str
    base_usd: float | None  # None: not priced (or not planned) on that side
    head_usd: float | None
    resources: list[ResourceChange] = field(default_factory=list)
    lines: list[LineDelta] = field(default_factory=list)
    note: str = ""  # e.g. "only in the baseline", "cannot be planned now"
    stack_named: int = 0  # paired resources whose inputs differ only by names that embed the stack (not changes)

    @property
    def delta(self) -> float | None:
        return None if self.base_usd is None or self.head_usd is None else self.head_usd - self.base_usd

    def by_role(self) -> dict[str, dict[str, list[ResourceChange]]]:
        """role -> change ("added", "removed", "changed") -> resources, roles in program order."""
        grouped: dict[str, dict[str, list[ResourceChange]]] = {}
        for change in self.resources:
            grouped.setdefault(change.role, {}).setdefault(change.change, []).append(change)
        return grouped

    def by_resource(self) -> dict[str, dict[tuple[str, str], list[ResourceChange]]]:
        """role -> (type, name) of a resource -> its changes and its parts' changes, in order."""
        grouped: dict[str, dict[tuple[str, str], list[ResourceChange]]] = {}
        for change in self.resources:
            owner = change.part_of if change.part_of[0] else (change.type, change.name)
            grouped.setdefault(change.role, {}).setdefault(owner, []).append(change)
        return grouped

    def counts(self) -> dict[str, int]:
        return {kind: sum(1 for r in self.resources if r.change == kind) for kind in ("added", "removed", "changed")}

    @property
    def changed(self) -> bool:
        """Anything to report: a resource added, removed or changed, a billing line moved, or a cloud planned on one side only."""
        return bool(self.resources or self.lines or self.note)

    def change_text(self) -> str:
        if self.delta is None:
            return "n/a"
        assert self.base_usd is not None
        return f"{signed_money(self.delta)} ({percent(self.delta, self.base_usd)})"


@dataclass
class Diff:
    base_label: str
    head_label: str
    clouds: list[CloudDiff]

    @property
    def changed(self) -> bool:
        return any(c.changed for c in self.clouds)

    def over(self, threshold: Threshold) -> list[CloudDiff]:
        """Clouds whose monthly cost rises by more than `threshold`."""
        return [c for c in self.clouds if c.delta is not None and c.base_usd is not None and threshold.exceeded(c.delta, c.base_usd)]

    def to_dict(self, threshold: Threshold | None = None) -> dict[str, Any]:
        result: dict[str, Any] = {
            "schema_version": DIFF_SCHEMA_VERSION,
            "base": self.base_label,
            "head": self.head_label,
            "changes_present": self.changed,
            "clouds": {
                c.cloud: {
                    "title": c.title,
                    "base_monthly_usd": _round(c.base_usd),
                    "head_monthly_usd": _round(c.head_usd),
                    "delta_monthly_usd": _round(c.delta),
                    "delta_percent": round(c.delta / c.base_usd * 100, 2) if c.delta is not None and c.base_usd else None,
                    "resources": c.counts(),
                    "resource_changes": [r.to_dict() for r in c.resources],
                    "differ_only_by_stack_names": c.stack_named,
                    "cost_lines": [{"role": x.role, "item": x.item, "base_usd": round(x.base_usd, 4), "head_usd": round(x.head_usd, 4),
                                    "delta_usd": round(x.delta, 4)} for x in c.lines],
                    "note": c.note,
                }
                for c in self.clouds
            },
        }
        if threshold is not None:
            over = self.over(threshold)
            result["fail_above"] = {"threshold": str(threshold), "exceeded": bool(over), "clouds": [c.cloud for c in over]}
        return result


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


SAVED_LIMIT = 64 * 1024 * 1024  # bytes: a saved comparison of a 50-stage pipeline is a few MB


def read_saved(path: Path) -> dict[str, Any]:
    """A comparison saved with `pipeline compare --format json`, checked enough to diff against."""
    from pipeline.spec.paths import UnsafePathError, read_regular_file

    try:  # bounded, regular files only: a FIFO or /dev/zero named .json must not hang or fill memory
        data = json.loads(read_regular_file(path, SAVED_LIMIT).decode("utf-8"))
    except FileNotFoundError:
        raise DiffInputError(f"{path}: no such file") from None
    except UnsafePathError as exc:
        raise DiffInputError(f"{exc.message}; pass a file saved with `pipeline compare --format json`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DiffInputError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("clouds"), dict) or "roles" not in data or "schema_version" not in data:
        raise DiffInputError(f"{path}: not a saved comparison; make one with `pipeline compare --format json -o {path.name}`")
    return data


def label_for(spec: Path, stack: str) -> str:
    try:
        shown = spec.relative_to(Path.cwd())
    except ValueError:
        shown = spec
    return f"{shown} ({stack})"


@dataclass(frozen=True)
class _Record:
    kind: str
    name: str  # physical
    logical: str
    digest: str
    inputs: dict[str, Any] | None  # None: a comparison saved before inputs were kept


def _resources(data: dict[str, Any], cloud: str) -> dict[tuple[str, str, str], _Record]:
    """(role, type, logical name[#n]) -> the resource, for one cloud of a comparison.

    Resources are paired by their logical name, as Pulumi pairs them (its URN), so a bucket named after
    another stack is "changed" at most, never removed and added; older files without logical names fall
    back to the physical name."""
    found: dict[tuple[str, str, str], _Record] = {}
    for role in data.get("roles", []):
        for resource in role.get("clouds", {}).get(cloud, []):
            base = resource.get("logical") or resource["name"]
            name, n = base, 2
            while (role["role"], resource["type"], name) in found:
                name, n = f"{base}#{n}", n + 1
            inputs = resource.get("inputs")
            found[(role["role"], resource["type"], name)] = _Record(role["kind"], resource["name"], resource.get("logical", ""),
                                                                    resource.get("inputs_sha256", ""), inputs if isinstance(inputs, dict) else None)
    return found


def _flatten(value: Any, path: str = "") -> dict[str, Any]:
    """Leaf values by path; a string holding a JSON document (an IAM policy, an event pattern) is opened too,
    so a changed policy names the statement that changed rather than the whole document."""
    if isinstance(value, str) and value[:1] in ("{", "[") and len(value) < 1_000_000:
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key in sorted(value):
            flat.update(_flatten(value[key], f"{path}.{key}" if path else str(key)))
        return flat
    if isinstance(value, list) and value:
        flat = {}
        for index, item in enumerate(value):
            flat.update(_flatten(item, f"{path}[{index}]"))
        return flat
    return {path: value}


class _Names:
    """What a stack's names look like, so two stacks' resources compare on what the spec says, not on names.

    Each paired resource's physical name on each side becomes one placeholder, and so does the stack's name
    where it stands as a word (`txn-scoring-dev-raw`, `Pipeline/txn-scoring/dev`, a URN's `dev-aws`)."""

    def __init__(self, names: dict[str, str], stacks: tuple[str, ...]):
        ordered = sorted((n for n in names if len(n) >= 3), key=len, reverse=True)
        self.names = names
        self.pattern = re.compile("|".join(re.escape(n) for n in ordered)) if ordered else None
        words = [re.escape(s) for s in stacks if s]
        self.stack = re.compile(rf"(?<![A-Za-z0-9])(?:{'|'.join(words)})(?![A-Za-z0-9])") if words else None

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if self.pattern is not None:
            value = self.pattern.sub(lambda m: self.names[m.group(0)], value)
        if self.stack is not None:
            value = self.stack.sub("<stack>", value)
        if not _HEX.fullmatch(value):  # a name's hash suffix ("score-57f24e79ee") derives from names; a bare digest is content
            value = _HEX_RUN.sub("<hash>", value)
        return value


_HEX = re.compile(r"[0-9a-f]+")
_HEX_RUN = re.compile(r"(?<![0-9a-z])[0-9a-f]{8,}(?![0-9a-z])")


def _stack_names(old: dict[str, Any], new: dict[str, Any], stacks: tuple[str, str], token: str) -> tuple[dict[str, str], dict[str, str]]:
    """Identifiers of a paired resource that carry each side's stack name (a service account id shortened
    differently per stack, `txn-scoring-dev-preproc-73b753` / `txn-scoring-prod-prepro-cbb143`): placeholders
    for both, so the e-mail or member that embeds them elsewhere pairs up too."""
    words = [re.compile(rf"(?<![A-Za-z0-9]){re.escape(stack)}(?![A-Za-z0-9])") for stack in stacks]
    before, after = _flatten(old), _flatten(new)
    olds, news = {}, {}
    for path in before.keys() & after.keys():
        a, b = before[path], after[path]
        if isinstance(a, str) and isinstance(b, str) and a != b and (a, b) != stacks and not any(c.isspace() for c in a + b) \
                and words[0].search(a) and words[1].search(b):  # (the stack's name alone is the word rule's)
            olds[a], news[b] = f"<{token}.{path}>", f"<{token}.{path}>"
    return olds, news


def _input_changes(old: dict[str, Any], new: dict[str, Any], old_names: _Names | None, new_names: _Names | None) -> tuple[list[InputChange], bool]:
    """The inputs that differ, and whether anything differed before names were set aside."""
    before, after = _flatten(old), _flatten(new)
    changes, raw = [], False
    for path in sorted(before.keys() | after.keys()):
        a, b = before.get(path), after.get(path)
        if a == b:
            continue
        raw = True
        if old_names is not None and new_names is not None and old_names(a) == new_names(b):
            continue
        changes.append(InputChange(path, a, b))
    return changes, raw
def _with_owner(change: ResourceChange, side: dict[tuple[str, str, str], _Record]) -> ResourceChange:
    """The change, knowing the resource it is a part of (a bucket's lifecycle under the bucket), as plans show it."""
    members = [(key[1], record) for key, record in side.items() if key[0] == change.role]
    for main, parts in group_parts(members, lambda m: m[1].name, lambda m: m[1].logical or m[1].name):
        if any(part[0] == change.type and part[1].logical == change.logical for part in parts):
            return dataclasses.replace(change, part_of=(main[0], main[1].name))
    return change


def _lines(data: dict[str, Any], cloud: str) -> dict[tuple[str, str], float]:
    totals: dict[tuple[str, str], float] = {}
    for line in ((data["clouds"].get(cloud) or {}).get("cost") or {}).get("lines", []):
        key = (line["role"], line["item"])
        totals[key] = totals.get(key, 0.0) + line["monthly_usd"]
    return totals


def _monthly(data: dict[str, Any], cloud: str) -> float | None:
    column = data["clouds"].get(cloud) or {}
    return (column.get("totals") or {}).get("monthly_usd") if column.get("planned") else None


def _cloud_diff(base: dict[str, Any], head: dict[str, Any], cloud: str, order: dict[str, int]) -> CloudDiff:
    """One cloud's changes; `order` ranks role keys in program order."""
    in_base, in_head = cloud in base["clouds"], cloud in head["clouds"]
    title = (head["clouds"].get(cloud) or base["clouds"].get(cloud) or {}).get("title", cloud)
    result = CloudDiff(cloud, title, _monthly(base, cloud) if in_base else None, _monthly(head, cloud) if in_head else None)
    if not in_base:
        result.note = "not in the baseline"
    elif not in_head:
        result.note = "not compared now"
    elif not head["clouds"][cloud].get("planned"):
        result.note = "cannot be planned now: " + "; ".join(head["clouds"][cloud].get("problems", []))
    elif not base["clouds"][cloud].get("planned"):
        result.note = "could not be planned in the baseline"
    old, new = _resources(base, cloud), _resources(head, cloud)
    for key in sorted(new.keys() - old.keys()):
        result.resources.append(ResourceChange("added", key[0], new[key].kind, key[1], new[key].name, new[key].logical))
    for key in sorted(old.keys() - new.keys()):
        result.resources.append(ResourceChange("removed", key[0], old[key].kind, key[1], old[key].name, old[key].logical))
    paired = sorted(old.keys() & new.keys())
    stacks = (str(base.get("stack") or ""), str(head.get("stack") or ""))
    old_names = new_names = None
    if stacks[0] and stacks[1] and stacks[0] != stacks[1]:  # names embed the stack: pair them, and the stack's name, before comparing
        olds = {old[k].name: f"<{k[2]}>" for k in paired}
        news = {new[k].name: f"<{k[2]}>" for k in paired}
        for k in paired:
            if old[k].inputs is not None and new[k].inputs is not None:
                more_old, more_new = _stack_names(old[k].inputs or {}, new[k].inputs or {}, stacks, k[2])
                olds.update(more_old)
                news.update(more_new)
        old_names, new_names = _Names(olds, stacks), _Names(news, stacks)
    for key in paired:
        before, after = old[key], new[key]
        if before.inputs is not None and after.inputs is not None:
            changes, differed = _input_changes(before.inputs, after.inputs, old_names, new_names)
            if changes:
                result.resources.append(ResourceChange("changed", key[0], after.kind, key[1], after.name, after.logical, tuple(changes)))
            elif differed:
                result.stack_named += 1
        elif before.digest and after.digest and before.digest != after.digest:  # a baseline saved without inputs: changed, but not how
            result.resources.append(ResourceChange("changed", key[0], after.kind, key[1], after.name, after.logical))
    result.resources = [_with_owner(change, old if change.change == "removed" else new) for change in result.resources]
    result.resources.sort(key=lambda r: (order.get(r.role, len(order)), r.role, r.part_of if r.part_of[0] else (r.type, r.name),
                                         bool(r.part_of[0]), ("added", "removed", "changed").index(r.change), r.type))
    base_lines, head_lines = _lines(base, cloud), _lines(head, cloud)
    for line_key in sorted(base_lines.keys() | head_lines.keys()):
        line = LineDelta(line_key[0], line_key[1], base_lines.get(line_key, 0.0), head_lines.get(line_key, 0.0))
        if round(line.delta, 4):
            result.lines.append(line)
    result.lines.sort(key=lambda x: -abs(x.delta))
    return result


def diff(base: dict[str, Any], head: dict[str, Any], base_label: str, head_label: str, clouds: list[str] | None = None) -> Diff:
    """The difference from `base` to `head` (both `compare --format json` objects), per cloud."""
    names = clouds or list(dict.fromkeys([*base["clouds"], *head["clouds"]]))
    roles = dict.fromkeys(r["role"] for r in [*head.get("roles", []), *base.get("roles", [])])
    order = {role: i for i, role in enumerate(roles)}
    return Diff(base_label, head_label, [_cloud_diff(base, head, c, order) for c in names if c in base["clouds"] or c in head["clouds"]])


# ---- Markdown (a pull-request comment) ---------------------------------------------------


def _cell(value: Any) -> str:
    text = "(none)" if value is None else value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    text = text if len(text) <= 60 else text[:57] + "..."
    return text.replace("|", "\\|").replace("`", "'")


def _markdown_resource(change: ResourceChange, shown: int = 8) -> str:
    """`s3.Bucket name`, or a part under its resource, then each changed input `old` → `new`."""
    label = f"{short_type(change.part_of[0])} `{change.part_of[1]}` › {change.type.rsplit(':', 1)[-1]}" if change.part_of[0] \
        else f"{short_type(change.type)} `{change.name}`"
    lines = [label] + [f"&nbsp;&nbsp;{_cell(i.path)}: `{_cell(i.old)}` → `{_cell(i.new)}`" for i in change.inputs[:shown]]
    if len(change.inputs) > shown:
        lines.append(f"&nbsp;&nbsp;… {len(change.inputs) - shown} more")
    return "<br>".join(lines)



def markdown(result: Diff, threshold: Threshold | None = None, max_lines: int = 15) -> str:
    out = [f"## Monthly cost and resources: {clouds_phrase([c.title for c in result.clouds])}", "",
           f"`{result.base_label}` → `{result.head_label}`", "",
           "| Cloud | Before | After | Change | Resources |", "|---|---:|---:|---:|---|"]
    over = {c.cloud for c in result.over(threshold)} if threshold else set()
    for c in result.clouds:
        counts = c.counts()
        resources = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n) or "no change"
        change = c.change_text() if c.delta is not None else c.note or "n/a"
        mark = " ⚠️" if c.cloud in over else ""
        out.append(f"| {c.title} | {money(c.base_usd)} | {money(c.head_usd)} | **{change}**{mark} | {resources} |")
    if threshold is not None:
        verdict = f"exceeds --fail-above {threshold} on {', '.join(c.title for c in result.over(threshold))}" if over else f"within --fail-above {threshold}"
        out += ["", f"Cost change {verdict}."]
    for c in result.clouds:
        if not (c.lines or c.resources):
            continue
        out += ["", f"<details><summary>{c.title}: {len(c.lines)} billing lines and {len(c.resources)} resources changed</summary>", ""]
        if c.lines:
            out += ["| Role | Billing line | Before | After | Change |", "|---|---|---:|---:|---:|"]
            out += [f"| `{x.role}` | {x.item} | {money(x.base_usd)} | {money(x.head_usd)} | {signed_money(x.delta)} |" for x in c.lines[:max_lines]]
            if len(c.lines) > max_lines:
                out.append(f"| | … {len(c.lines) - max_lines} smaller changes | | | |")
            out.append("")
        if c.resources:
            out += ["| Role | Added | Removed | Changed |", "|---|---|---|---|"]
            for role, changes in c.by_role().items():
                cells = ["<br>".join(_markdown_resource(r) for r in changes.get(kind, [])) or "" for kind in ("added", "removed", "changed")]
                out.append(f"| `{role}` | " + " | ".join(cells) + " |")
        if c.stack_named:
            out += ["", f"{c.stack_named} more resources differ only in names that embed the stack (not changes)."]
        out += ["", "</details>"]
    out.append("")
    return "\n".join(out)
