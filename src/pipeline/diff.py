"""`pipeline diff`: what a change does to each cloud's resources and monthly bill.

Both sides are comparisons in the documented `compare --format json` shape: one computed now from
a spec (and stack), the other computed from another spec or stack, or read from a file saved
earlier (e.g. on the main branch), as Infracost users do on every pull request. Resources are
matched by role, type and name; a resource whose inputs changed is "changed" (when both sides
carry `inputs_sha256`). Cost is compared per billing line (role and item). A threshold
(`--fail-above 5` USD or `10%` of the baseline) turns a cost rise into a failing CI step.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.plan import short_type
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
class ResourceChange:
    change: str  # "added" | "removed" | "changed"
    role: str
    kind: str
    type: str
    name: str


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

    @property
    def delta(self) -> float | None:
        return None if self.base_usd is None or self.head_usd is None else self.head_usd - self.base_usd

    def by_role(self) -> dict[str, dict[str, list[ResourceChange]]]:
        """role -> change ("added", "removed", "changed") -> resources, roles in program order."""
        grouped: dict[str, dict[str, list[ResourceChange]]] = {}
        for change in self.resources:
            grouped.setdefault(change.role, {}).setdefault(change.change, []).append(change)
        return grouped

    def counts(self) -> dict[str, int]:
        return {kind: sum(1 for r in self.resources if r.change == kind) for kind in ("added", "removed", "changed")}

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

    def over(self, threshold: Threshold) -> list[CloudDiff]:
        """Clouds whose monthly cost rises by more than `threshold`."""
        return [c for c in self.clouds if c.delta is not None and c.base_usd is not None and threshold.exceeded(c.delta, c.base_usd)]

    def to_dict(self, threshold: Threshold | None = None) -> dict[str, Any]:
        result: dict[str, Any] = {
            "schema_version": DIFF_SCHEMA_VERSION,
            "base": self.base_label,
            "head": self.head_label,
            "clouds": {
                c.cloud: {
                    "title": c.title,
                    "base_monthly_usd": _round(c.base_usd),
                    "head_monthly_usd": _round(c.head_usd),
                    "delta_monthly_usd": _round(c.delta),
                    "delta_percent": round(c.delta / c.base_usd * 100, 2) if c.delta is not None and c.base_usd else None,
                    "resources": c.counts(),
                    "resource_changes": [vars(r) for r in c.resources],
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


def _resources(data: dict[str, Any], cloud: str) -> dict[tuple[str, str, str], tuple[str, str, str]]:
    """(role, type, logical name[#n]) -> (kind, physical name, inputs digest) for one cloud of a comparison.

    Resources are matched by their logical name, as Pulumi matches them (its URN), so a renamed
    bucket of another stack is "changed", not removed and added; older files without logical
    names fall back to the physical name."""
    found: dict[tuple[str, str, str], tuple[str, str, str]] = {}
    for role in data.get("roles", []):
        for resource in role.get("clouds", {}).get(cloud, []):
            base = resource.get("logical") or resource["name"]
            name, n = base, 2
            while (role["role"], resource["type"], name) in found:
                name, n = f"{base}#{n}", n + 1
            found[(role["role"], resource["type"], name)] = (role["kind"], resource["name"], resource.get("inputs_sha256", ""))
    return found


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
        result.resources.append(ResourceChange("added", key[0], new[key][0], key[1], new[key][1]))
    for key in sorted(old.keys() - new.keys()):
        result.resources.append(ResourceChange("removed", key[0], old[key][0], key[1], old[key][1]))
    for key in sorted(old.keys() & new.keys()):
        if old[key][2] and new[key][2] and old[key][2] != new[key][2]:
            result.resources.append(ResourceChange("changed", key[0], new[key][0], key[1], new[key][1]))
    result.resources.sort(key=lambda r: (order.get(r.role, len(order)), r.role, ("added", "removed", "changed").index(r.change), r.type))
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
                cells = ["<br>".join(f"{short_type(r.type)} `{r.name}`" for r in changes.get(kind, [])) or "" for kind in ("added", "removed", "changed")]
                out.append(f"| `{role}` | " + " | ".join(cells) + " |")
        out += ["", "</details>"]
    out.append("")
    return "\n".join(out)
