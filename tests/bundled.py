"""The bundled stacks (`stacks/*/pipeline.yaml` and their overlays), found rather than listed, and their
plans, made once per test session and shared by the tests that need them."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from pipeline.plan import Plan
from pipeline.planner import plan
from pipeline.spec.load import load_spec

REPO = Path(__file__).resolve().parents[1]


@cache
def bundled_stacks() -> dict[str, tuple[Path, tuple[str | None, ...]]]:
    """Stack name (its folder) -> (spec, overlays); a stack without overlays plans its default stack."""
    found: dict[str, tuple[Path, tuple[str | None, ...]]] = {}
    for spec in sorted((REPO / "stacks").glob("*/pipeline.yaml")):
        overlays = tuple(p.stem for p in sorted((spec.parent / "stacks").glob("*.yaml")))
        found[spec.parent.name] = (spec, overlays or (None,))
    return found


@cache
def bundled_plans(stack: str, cloud: str) -> tuple[Plan, ...]:
    """Every overlay of a bundled stack planned for `cloud` (planning takes seconds: made once)."""
    spec, overlays = bundled_stacks()[stack]
    return tuple(plan(load_spec(spec, overlay), cloud) for overlay in overlays)
